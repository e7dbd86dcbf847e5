//! Pooling layers: MaxPool2D, AvgPool2D, GlobalAvgPool2D.
