//! The README's ten-line example, kept compiling and correct.

use kiln::prelude::*;

#[test]
fn readme_example_gives_two_x() -> kiln::Result<()> {
    kiln::random::seed(42);
    let x = nd::random::normal(0.0, 1.0, [3, 4])?;
    x.attach_grad();
    let y = autograd::record(|| (&x * &x)?.sum())?;
    y.backward()?;
    let twice = (&x * 2.0)?.to_vec::<f32>()?;
    assert_eq!(x.grad()?.to_vec::<f32>()?, twice);
    Ok(())
}

/// The README's hybridize example, kept compiling and correct.
#[test]
fn readme_hybridize_example() -> kiln::Result<()> {
    use kiln::gluon::init::Xavier;
    use kiln::gluon::nn::{ActivationKind, Dense, HybridSequential};
    use kiln::gluon::{Block, HybridBlock};
    use kiln::hybrid::SymbolBlock;
    use std::sync::Arc;

    let net = HybridSequential::new();
    net.add(Dense::new(256).activation(ActivationKind::Relu));
    net.add(Dense::new(10));
    net.initialize(Arc::new(Xavier::default()), Context::cpu())?;
    let x = nd::random::uniform(0.0, 1.0, [64, 784])?;
    let imperative = net.forward(&x)?;

    net.hybridize();
    let traced = net.forward(&x)?; // traces once into a graph, then runs it
    let cached = net.forward(&x)?; // same signature: the cached graph, no Rust forward
    assert_eq!(net.cache_stats().traces, 1);
    assert_eq!(net.cache_stats().hits, 1);

    let dir = tempfile::tempdir().map_err(|e| kiln::Error::invalid("tempdir", e.to_string()))?;
    let (graph, params) = net.export(&dir.path().join("mlp"))?; // mlp-graph.json + mlp.safetensors
    let loaded = SymbolBlock::imports(graph, &["data"], params, Context::cpu())?;
    let reloaded = loaded.forward(&x)?;

    let a = imperative.to_vec::<f32>()?;
    for other in [&traced, &cached, &reloaded] {
        let b = other.to_vec::<f32>()?;
        let worst = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "differs by {worst}");
    }
    Ok(())
}
