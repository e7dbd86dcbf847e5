//! gluon convolution and pooling layers: shapes, hand-computed values, deferred input
//! channels, groups, and errors on bad input.

use kiln_frontend::gluon::init::{Initializer, Xavier};
use kiln_frontend::gluon::nn::conv::{Conv1D, Conv2D, Conv2DTranspose};
use kiln_frontend::gluon::nn::pool::{
    AvgPool1D, AvgPool2D, GlobalAvgPool1D, GlobalAvgPool2D, GlobalMaxPool1D, GlobalMaxPool2D,
    MaxPool1D, MaxPool2D,
};
use kiln_frontend::gluon::nn::{ActivationKind, HybridSequential};
use kiln_frontend::gluon::Block;
use kiln_frontend::{autograd, nd, Context, NDArray, Result};
use std::sync::Arc;

fn xavier() -> Arc<dyn Initializer> {
    Arc::new(Xavier::default())
}

fn f32s(a: &NDArray) -> Vec<f32> {
    a.to_vec::<f32>().expect("f32 array")
}

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "element {i}: got {g}, want {w}");
    }
}

/// `[1, 1, 3, 3]` holding 1..=9.
fn one_to_nine() -> Result<NDArray> {
    nd::arange_step(1.0, 10.0, 1.0)?.reshape(&[1, 1, 3, 3])
}

#[test]
fn lenet_stack_shapes_and_names() -> Result<()> {
    let net = HybridSequential::new();
    net.name_scope(|| {
        net.add(Conv2D::new(20, 5).activation(ActivationKind::Relu));
        net.add(MaxPool2D::new(2));
        net.add(Conv2D::new(50, [5, 5]).activation(ActivationKind::Relu));
        net.add(MaxPool2D::default());
    });
    net.initialize(xavier(), Context::cpu())?;
    let x = nd::ones([2, 1, 28, 28])?;
    let shapes: Vec<Vec<usize>> = {
        let mut h = x.clone();
        let mut out = Vec::new();
        for i in 0..net.len() {
            h = net.get(i).expect("child").forward(&h)?;
            out.push(h.shape().dims().to_vec());
        }
        out
    };
    assert_eq!(
        shapes,
        vec![
            vec![2, 20, 24, 24],
            vec![2, 20, 12, 12],
            vec![2, 50, 8, 8],
            vec![2, 50, 4, 4]
        ]
    );
    assert_eq!(net.forward(&x)?.shape().dims(), &[2, 50, 4, 4]);
    let params = net.collect_params()?;
    let names = params.names();
    assert_eq!(
        names,
        vec![
            "hybridsequential0_conv0_weight",
            "hybridsequential0_conv0_bias",
            "hybridsequential0_conv1_weight",
            "hybridsequential0_conv1_bias",
        ]
    );
    // in_channels learnt on the first forward pass
    let w0 = params.get("hybridsequential0_conv0_weight").expect("w0");
    let w1 = params.get("hybridsequential0_conv1_weight").expect("w1");
    assert_eq!(w0.shape().dims(), &[20, 1, 5, 5]);
    assert_eq!(w1.shape().dims(), &[50, 20, 5, 5]);
    Ok(())
}

#[test]
fn conv2d_values_by_hand() -> Result<()> {
    let conv = Conv2D::new(1, 2).in_channels(1);
    assert_eq!(conv.prefix(), "conv0_");
    assert_eq!(conv.weight().name(), "conv0_weight");
    assert_eq!(conv.weight().shape().dims(), &[1, 1, 2, 2]);
    conv.initialize(xavier(), Context::cpu())?;
    conv.weight()
        .set_data(&nd::array(&[1.0f32, 2.0, 3.0, 4.0])?.reshape(&[1, 1, 2, 2])?)?;
    conv.bias()
        .expect("bias")
        .set_data(&nd::array(&[0.5f32])?)?;
    let y = conv.forward(&one_to_nine()?)?;
    assert_eq!(y.shape().dims(), &[1, 1, 2, 2]);
    // out[i, j] = Σ x[i+a, j+b] · w[a, b] + 0.5, e.g. 1·1 + 2·2 + 4·3 + 5·4 + 0.5
    assert_eq!(f32s(&y), vec![37.5, 47.5, 67.5, 77.5]);
    Ok(())
}

#[test]
fn conv2d_padding_and_strides_by_hand() -> Result<()> {
    let conv = Conv2D::new(1, 2).padding(1).strides(2).use_bias(false);
    assert!(conv.bias().is_none());
    conv.initialize(xavier(), Context::cpu())?;
    // Windows start at (-1,-1), (-1,1), (1,-1), (1,1) on the padded 1..=9 grid.
    let x = one_to_nine()?;
    conv.forward(&x)?; // finishes the deferred init
    conv.weight()
        .set_data(&nd::array(&[1.0f32, 2.0, 3.0, 4.0])?.reshape(&[1, 1, 2, 2])?)?;
    let y = conv.forward(&x)?;
    assert_eq!(y.shape().dims(), &[1, 1, 2, 2]);
    // (-1,-1): 1·4;  (-1,1): 2·3 + 3·4;  (1,-1): 4·2 + 7·4;  (1,1): 5·1 + 6·2 + 8·3 + 9·4
    assert_eq!(f32s(&y), vec![4.0, 18.0, 36.0, 77.0]);
    Ok(())
}

#[test]
fn conv2d_dilation_shape_and_value() -> Result<()> {
    let conv = Conv2D::new(1, 2).dilation(2).use_bias(false);
    conv.initialize(Arc::new(kiln_frontend::gluon::init::One), Context::cpu())?;
    let y = conv.forward(&one_to_nine()?)?;
    // A dilated 2x2 kernel of ones sees the four corners: 1 + 3 + 7 + 9.
    assert_eq!(y.shape().dims(), &[1, 1, 1, 1]);
    assert_eq!(f32s(&y), vec![20.0]);
    Ok(())
}

#[test]
fn conv2d_activation_applies() -> Result<()> {
    let conv = Conv2D::new(1, 1)
        .use_bias(false)
        .activation(ActivationKind::Relu);
    conv.initialize(xavier(), Context::cpu())?;
    let x = nd::array(&[-2.0f32, 3.0])?.reshape(&[1, 1, 1, 2])?;
    conv.forward(&x)?;
    conv.weight().set_data(&nd::ones([1, 1, 1, 1])?)?;
    assert_eq!(f32s(&conv.forward(&x)?), vec![0.0, 3.0]);
    Ok(())
}

#[test]
fn conv2d_groups() -> Result<()> {
    // Two groups of one channel each: each output sees only its own input channel.
    let conv = Conv2D::new(2, 1).groups(2).use_bias(false);
    conv.initialize(xavier(), Context::cpu())?;
    let x = nd::array(&[3.0f32, 5.0])?.reshape(&[1, 2, 1, 1])?;
    conv.forward(&x)?;
    assert_eq!(conv.weight().shape().dims(), &[2, 1, 1, 1]);
    conv.weight()
        .set_data(&nd::array(&[2.0f32, 10.0])?.reshape(&[2, 1, 1, 1])?)?;
    assert_eq!(f32s(&conv.forward(&x)?), vec![6.0, 50.0]);

    // 4 input channels, 2 groups: each output channel sums its group's 2 channels.
    let conv = Conv2D::new(2, 1).groups(2).in_channels(4).use_bias(false);
    assert_eq!(conv.weight().shape().dims(), &[2, 2, 1, 1]);
    conv.initialize(Arc::new(kiln_frontend::gluon::init::One), Context::cpu())?;
    let x = nd::array(&[1.0f32, 2.0, 30.0, 40.0])?.reshape(&[1, 4, 1, 1])?;
    assert_eq!(f32s(&conv.forward(&x)?), vec![3.0, 70.0]);
    Ok(())
}

#[test]
fn conv1d_values() -> Result<()> {
    let conv = Conv1D::new(1, 2).use_bias(false);
    conv.initialize(xavier(), Context::cpu())?;
    let x = nd::array(&[1.0f32, 2.0, 4.0, 8.0])?.reshape(&[1, 1, 4])?;
    conv.forward(&x)?;
    assert_eq!(conv.weight().shape().dims(), &[1, 1, 2]);
    conv.weight()
        .set_data(&nd::array(&[1.0f32, -1.0])?.reshape(&[1, 1, 2])?)?;
    let y = conv.forward(&x)?;
    assert_eq!(y.shape().dims(), &[1, 1, 3]);
    assert_eq!(f32s(&y), vec![-1.0, -2.0, -4.0]);
    Ok(())
}

#[test]
fn conv2d_transpose_values_and_shapes() -> Result<()> {
    let up = Conv2DTranspose::new(1, 2).use_bias(false);
    up.initialize(Arc::new(kiln_frontend::gluon::init::One), Context::cpu())?;
    let x = nd::array(&[1.0f32, 2.0, 3.0, 4.0])?.reshape(&[1, 1, 2, 2])?;
    let y = up.forward(&x)?;
    // Each input scatters itself over a 2x2 block of ones.
    assert_eq!(y.shape().dims(), &[1, 1, 3, 3]);
    assert_eq!(f32s(&y), vec![1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0]);

    // weight [in_channels, channels/groups, kh, kw]; output (H-1)·s - 2p + k + output_padding
    let up = Conv2DTranspose::new(6, 3)
        .strides(2)
        .padding(1)
        .output_padding(1)
        .groups(2);
    up.initialize(xavier(), Context::cpu())?;
    let y = up.forward(&nd::ones([2, 4, 5, 5])?)?;
    assert_eq!(up.weight().shape().dims(), &[4, 3, 3, 3]);
    assert_eq!(y.shape().dims(), &[2, 6, 10, 10]);
    Ok(())
}

#[test]
fn conv_gradients_flow_to_weight_and_bias() -> Result<()> {
    let conv = Conv2D::new(1, 2);
    conv.initialize(xavier(), Context::cpu())?;
    let x = one_to_nine()?;
    let loss = autograd::record(|| conv.forward(&x)?.sum())?;
    loss.backward()?;
    // d(sum)/d(w[a,b]) = Σ over output positions of the input under w[a,b]
    assert_eq!(f32s(&conv.weight().grad()?), vec![12.0, 16.0, 24.0, 28.0]);
    assert_eq!(f32s(&conv.bias().expect("bias").grad()?), vec![4.0]);
    Ok(())
}

#[test]
fn conv_errors_are_clear() -> Result<()> {
    // wrong rank
    let conv = Conv2D::new(4, 3);
    conv.initialize(xavier(), Context::cpu())?;
    let e = conv.forward(&nd::ones([1, 3, 8])?).unwrap_err().to_string();
    assert!(
        e.contains("Conv2D") && e.contains("NCHW") && e.contains("[1, 3, 8]"),
        "{e}"
    );

    // channel mismatch with a declared in_channels
    let conv = Conv2D::new(4, 3).in_channels(3);
    conv.initialize(xavier(), Context::cpu())?;
    let e = conv
        .forward(&nd::ones([1, 2, 8, 8])?)
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 channels") && e.contains("conv"), "{e}");

    // channel mismatch after the deferred shape was learnt
    let conv = Conv2D::new(4, 3);
    conv.initialize(xavier(), Context::cpu())?;
    conv.forward(&nd::ones([1, 3, 8, 8])?)?;
    let e = conv
        .forward(&nd::ones([1, 5, 8, 8])?)
        .unwrap_err()
        .to_string();
    assert!(e.contains("5 channels"), "{e}");

    // groups that do not divide the input channels
    let conv = Conv2D::new(4, 1).groups(2);
    conv.initialize(xavier(), Context::cpu())?;
    let e = conv
        .forward(&nd::ones([1, 3, 4, 4])?)
        .unwrap_err()
        .to_string();
    assert!(e.contains("groups"), "{e}");

    // groups that do not divide the output channels
    let conv = Conv2D::new(3, 1).groups(2);
    conv.initialize(xavier(), Context::cpu())?;
    assert!(conv.forward(&nd::ones([1, 4, 4, 4])?).is_err());

    // a kernel with the wrong number of dims
    let conv = Conv2D::new(1, [2, 2, 2]);
    conv.initialize(xavier(), Context::cpu())?;
    let e = conv
        .forward(&nd::ones([1, 1, 4, 4])?)
        .unwrap_err()
        .to_string();
    assert!(e.contains("kernel_size"), "{e}");

    // a kernel larger than the input
    let conv = Conv2D::new(1, 5);
    conv.initialize(xavier(), Context::cpu())?;
    assert!(conv.forward(&nd::ones([1, 1, 3, 3])?).is_err());

    // uninitialized
    let conv = Conv2D::new(1, 1);
    let e = conv
        .forward(&nd::ones([1, 1, 3, 3])?)
        .unwrap_err()
        .to_string();
    assert!(e.contains("initialize"), "{e}");

    // dtype mismatch
    let conv = Conv2D::new(1, 1);
    conv.initialize(xavier(), Context::cpu())?;
    let x = nd::ones_with([1, 1, 2, 2], kiln_frontend::DType::F64)?;
    assert!(conv.forward(&x).unwrap_err().to_string().contains("dtype"));
    Ok(())
}

#[test]
fn max_and_avg_pool_values() -> Result<()> {
    let x = nd::arange(16.0)?.reshape(&[1, 1, 4, 4])?;
    assert_eq!(
        f32s(&MaxPool2D::new(2).forward(&x)?),
        vec![5.0, 7.0, 13.0, 15.0]
    );
    assert_eq!(
        f32s(&AvgPool2D::new(2).forward(&x)?),
        vec![2.5, 4.5, 10.5, 12.5]
    );
    // stride 1 overrides the default stride (= pool size)
    let y = MaxPool2D::new(3).strides(1).forward(&x)?;
    assert_eq!(y.shape().dims(), &[1, 1, 2, 2]);
    assert_eq!(f32s(&y), vec![10.0, 11.0, 14.0, 15.0]);

    // padding: a 2x2 window at stride 2 over the padded 3x3 grid 1..=9
    let x = one_to_nine()?;
    let with_pad = AvgPool2D::new(2).padding(1).forward(&x)?;
    assert_eq!(with_pad.shape().dims(), &[1, 1, 2, 2]);
    // divisor 4 (padding counted): 1/4, (2+3)/4, (4+7)/4, (5+6+8+9)/4
    assert_eq!(f32s(&with_pad), vec![0.25, 1.25, 2.75, 7.0]);
    let without = AvgPool2D::new(2)
        .padding(1)
        .count_include_pad(false)
        .forward(&x)?;
    assert_eq!(f32s(&without), vec![1.0, 2.5, 5.5, 7.0]);
    let max_pad = MaxPool2D::new(2).padding(1).forward(&(&x * -1.0)?)?;
    // padding never wins a max
    assert_eq!(f32s(&max_pad), vec![-1.0, -2.0, -4.0, -5.0]);
    Ok(())
}

#[test]
fn pool1d_values() -> Result<()> {
    let x = nd::array(&[1.0f32, 5.0, 2.0, 4.0, 9.0, 0.0])?.reshape(&[1, 1, 6])?;
    assert_eq!(f32s(&MaxPool1D::new(2).forward(&x)?), vec![5.0, 4.0, 9.0]);
    assert_eq!(
        f32s(&AvgPool1D::new(3).forward(&x)?),
        vec![8.0 / 3.0, 13.0 / 3.0]
    );
    Ok(())
}

#[test]
fn global_pool_values() -> Result<()> {
    // [2, 2, 2, 2]: sample n, channel c holds 4 consecutive numbers starting at 8n + 4c.
    let x = nd::arange(16.0)?.reshape(&[2, 2, 2, 2])?;
    let y = GlobalAvgPool2D::new().forward(&x)?;
    assert_eq!(y.shape().dims(), &[2, 2, 1, 1]);
    assert_eq!(f32s(&y), vec![1.5, 5.5, 9.5, 13.5]);
    let y = GlobalMaxPool2D::new().forward(&x)?;
    assert_eq!(y.shape().dims(), &[2, 2, 1, 1]);
    assert_eq!(f32s(&y), vec![3.0, 7.0, 11.0, 15.0]);

    let x = nd::array(&[1.0f32, 5.0, 3.0, 2.0, 0.0, 4.0])?.reshape(&[1, 2, 3])?;
    let y = GlobalAvgPool1D::new().forward(&x)?;
    assert_eq!(y.shape().dims(), &[1, 2, 1]);
    assert_eq!(f32s(&y), vec![3.0, 2.0]);
    assert_eq!(f32s(&GlobalMaxPool1D::new().forward(&x)?), vec![5.0, 4.0]);
    Ok(())
}

#[test]
fn pool_gradient_routes_to_max() -> Result<()> {
    let x = nd::array(&[1.0f32, 5.0, 2.0, 4.0])?.reshape(&[1, 1, 2, 2])?;
    x.attach_grad();
    let y = autograd::record(|| MaxPool2D::new(2).forward(&x)?.sum())?;
    y.backward()?;
    assert_close(&f32s(&x.grad()?), &[0.0, 1.0, 0.0, 0.0], 0.0);
    Ok(())
}

#[test]
fn pool_errors_are_clear() -> Result<()> {
    let e = MaxPool2D::new(2)
        .forward(&nd::ones([1, 4, 4])?)
        .unwrap_err()
        .to_string();
    assert!(e.contains("MaxPool2D") && e.contains("NCHW"), "{e}");
    let e = GlobalAvgPool2D::new()
        .forward(&nd::ones([4, 4])?)
        .unwrap_err()
        .to_string();
    assert!(e.contains("GlobalAvgPool2D"), "{e}");
    let e = MaxPool1D::new(2)
        .forward(&nd::ones([1, 1, 4, 4])?)
        .unwrap_err()
        .to_string();
    assert!(e.contains("NCW"), "{e}");
    let e = MaxPool2D::new(5)
        .forward(&nd::ones([1, 1, 4, 4])?)
        .unwrap_err()
        .to_string();
    assert!(e.contains("pool_size"), "{e}");
    let e = AvgPool2D::new([2, 2, 2])
        .forward(&nd::ones([1, 1, 4, 4])?)
        .unwrap_err()
        .to_string();
    assert!(e.contains("pool_size"), "{e}");
    Ok(())
}

#[test]
fn display_as_gluon() {
    assert_eq!(AvgPool2D::new(2).prefix(), "pool0_");
    assert_eq!(GlobalAvgPool2D::new().prefix(), "pool1_");
    assert_eq!(
        Conv2D::new(20, 5).to_string(),
        "Conv2D(None -> 20, kernel_size=(5, 5), stride=(1, 1))"
    );
    assert_eq!(
        MaxPool2D::new(2).to_string(),
        "MaxPool2D(size=(2, 2), stride=(2, 2), padding=(0, 0))"
    );
}
