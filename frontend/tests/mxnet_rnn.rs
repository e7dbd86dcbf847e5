//! The fused MXNet `RNN` op, unrolled: every mode, two layers, both directions, state
//! outputs, against a direct implementation of MXNet's equations and parameter packing.

use kiln_frontend::mxnet::{convert, Symbol};
use kiln_ir::{DType, Tensor, TensorType};
use serde_json::json;
use std::collections::BTreeMap;

/// A deterministic pseudo-random sequence in [-0.5, 0.5).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32
        })
        .collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `W [rows, cols]` times `v [cols]`.
fn matvec(w: &[f64], rows: usize, cols: usize, v: &[f64]) -> Vec<f64> {
    (0..rows)
        .map(|r| (0..cols).map(|c| w[r * cols + c] * v[c]).sum())
        .collect()
}

struct Cfg {
    mode: &'static str,
    gates: usize,
    t: usize,
    n: usize,
    input: usize,
    h: usize,
    layers: usize,
    dirs: usize,
}

/// MXNet's RNN forward: returns (out [T, N, D*H], hy, cy) flattened.
fn reference(
    c: &Cfg,
    x: &[f64],
    p: &[f64],
    h0: &[f64],
    c0: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let gh = c.gates * c.h;
    let mut w_off = 0;
    let mut b_off: usize = (0..c.layers)
        .map(|l| {
            let inp = if l == 0 { c.input } else { c.dirs * c.h };
            c.dirs * (gh * inp + gh * c.h)
        })
        .sum();
    let mut layer_in: Vec<Vec<Vec<f64>>> = (0..c.t)
        .map(|t| {
            (0..c.n)
                .map(|b| x[(t * c.n + b) * c.input..][..c.input].to_vec())
                .collect()
        })
        .collect();
    let (mut hy, mut cy) = (Vec::new(), Vec::new());
    for l in 0..c.layers {
        let inp = if l == 0 { c.input } else { c.dirs * c.h };
        let mut outs = vec![vec![vec![0.0; c.dirs * c.h]; c.n]; c.t];
        for d in 0..c.dirs {
            let wx = &p[w_off..w_off + gh * inp];
            w_off += gh * inp;
            let wh = &p[w_off..w_off + gh * c.h];
            w_off += gh * c.h;
            let bx = &p[b_off..b_off + gh];
            b_off += gh;
            let bh = &p[b_off..b_off + gh];
            b_off += gh;
            let k = l * c.dirs + d;
            for b in 0..c.n {
                let mut h = h0[(k * c.n + b) * c.h..][..c.h].to_vec();
                let mut cell = c0
                    .get((k * c.n + b) * c.h..)
                    .map(|s| s[..c.h].to_vec())
                    .unwrap_or_default();
                for s in 0..c.t {
                    let t = if d == 1 { c.t - 1 - s } else { s };
                    let xp: Vec<f64> = matvec(wx, gh, inp, &layer_in[t][b])
                        .iter()
                        .zip(bx)
                        .map(|(a, b)| a + b)
                        .collect();
                    let hp: Vec<f64> = matvec(wh, gh, c.h, &h)
                        .iter()
                        .zip(bh)
                        .map(|(a, b)| a + b)
                        .collect();
                    let hh = c.h;
                    let mut nh = vec![0.0; hh];
                    match c.mode {
                        "lstm" => {
                            for j in 0..hh {
                                let g = |q: usize| xp[q * hh + j] + hp[q * hh + j];
                                let (i, f, gg, o) =
                                    (sigmoid(g(0)), sigmoid(g(1)), g(2).tanh(), sigmoid(g(3)));
                                cell[j] = f * cell[j] + i * gg;
                                nh[j] = o * cell[j].tanh();
                            }
                        }
                        "gru" => {
                            for j in 0..hh {
                                let r = sigmoid(xp[j] + hp[j]);
                                let z = sigmoid(xp[hh + j] + hp[hh + j]);
                                let nn = (xp[2 * hh + j] + r * hp[2 * hh + j]).tanh();
                                nh[j] = (1.0 - z) * nn + z * h[j];
                            }
                        }
                        "rnn_tanh" => (0..hh).for_each(|j| nh[j] = (xp[j] + hp[j]).tanh()),
                        _ => (0..hh).for_each(|j| nh[j] = (xp[j] + hp[j]).max(0.0)),
                    }
                    h = nh;
                    outs[t][b][d * c.h..(d + 1) * c.h].copy_from_slice(&h);
                }
                hy.push((k, b, h));
                if c.mode == "lstm" {
                    cy.push((k, b, cell));
                }
            }
        }
        layer_in = outs;
    }
    let flat_state = |mut v: Vec<(usize, usize, Vec<f64>)>| -> Vec<f64> {
        v.sort_by_key(|(k, b, _)| (*k, *b));
        v.into_iter().flat_map(|(_, _, h)| h).collect()
    };
    let out: Vec<f64> = layer_in.into_iter().flatten().flatten().collect();
    (out, flat_state(hy), flat_state(cy))
}

fn check(c: Cfg) {
    let gh = c.gates * c.h;
    let mut np = 0;
    for l in 0..c.layers {
        let inp = if l == 0 { c.input } else { c.dirs * c.h };
        np += c.dirs * (gh * inp + gh * c.h + 2 * gh);
    }
    let x = values(c.t * c.n * c.input, 1);
    let p = values(np, 2);
    let sdims = [c.layers * c.dirs, c.n, c.h];
    let h0 = values(sdims.iter().product(), 3);
    let c0 = values(sdims.iter().product(), 4);
    let lstm = c.mode == "lstm";
    let mut nodes = vec![
        json!({"op": "null", "name": "data"}),
        json!({"op": "null", "name": "params"}),
        json!({"op": "null", "name": "h0"}),
    ];
    let mut inputs = vec![json!([0, 0, 0]), json!([1, 0, 0]), json!([2, 0, 0])];
    if lstm {
        nodes.push(json!({"op": "null", "name": "c0"}));
        inputs.push(json!([3, 0, 0]));
    }
    let rnn_ix = nodes.len();
    nodes.push(json!({"op": "RNN", "name": "rnn", "attrs": {
        "mode": c.mode, "state_size": c.h.to_string(), "num_layers": c.layers.to_string(),
        "bidirectional": if c.dirs == 2 { "True" } else { "False" }, "state_outputs": "True",
        "p": "0.2"}, "inputs": inputs}));
    let mut heads = vec![json!([rnn_ix, 0, 0]), json!([rnn_ix, 1, 0])];
    if lstm {
        heads.push(json!([rnn_ix, 2, 0]));
    }
    let sym = Symbol::from_value(&json!({"nodes": nodes, "heads": heads})).unwrap();

    let xt = Tensor::from_vec(x.clone(), [c.t, c.n, c.input]).unwrap();
    let pt = Tensor::from_vec(p.clone(), [np]).unwrap();
    let ht = Tensor::from_vec(h0.clone(), sdims).unwrap();
    let ct = Tensor::from_vec(c0.clone(), sdims).unwrap();
    let mut in_types = vec![("data".to_string(), xt.ty()), ("h0".to_string(), ht.ty())];
    if lstm {
        in_types.push(("c0".to_string(), ct.ty()));
    }
    let params: BTreeMap<String, TensorType> = [("params".to_string(), pt.ty())].into();
    let conv = convert(&sym, &in_types, &params).unwrap();
    let mut bind = vec![
        ("data", xt.view()),
        ("params", pt.view()),
        ("h0", ht.view()),
    ];
    if lstm {
        bind.push(("c0", ct.view()));
    }
    let got = conv.graph.run(&bind).unwrap();

    let f = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<_>>();
    let (out, hy, cy) = reference(&c, &f(&x), &f(&p), &f(&h0), &f(&c0));
    let label = format!("{} layers={} dirs={}", c.mode, c.layers, c.dirs);
    assert_eq!(got[0].shape().dims(), &[c.t, c.n, c.dirs * c.h], "{label}");
    assert_eq!(got[1].shape().dims(), &sdims, "{label}");
    let mut wants = vec![out, hy];
    if lstm {
        wants.push(cy);
    }
    for (k, (g, w)) in got.iter().zip(&wants).enumerate() {
        for (i, (a, b)) in g.to_f64_vec().iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() < 1e-5,
                "{label}: output {k}[{i}]: got {a}, want {b}"
            );
        }
    }
}

#[test]
fn lstm_two_layers_bidirectional() {
    check(Cfg {
        mode: "lstm",
        gates: 4,
        t: 3,
        n: 2,
        input: 3,
        h: 2,
        layers: 2,
        dirs: 2,
    });
}

#[test]
fn gru_two_layers() {
    check(Cfg {
        mode: "gru",
        gates: 3,
        t: 4,
        n: 2,
        input: 3,
        h: 3,
        layers: 2,
        dirs: 1,
    });
}

#[test]
fn gru_bidirectional() {
    check(Cfg {
        mode: "gru",
        gates: 3,
        t: 3,
        n: 1,
        input: 2,
        h: 2,
        layers: 1,
        dirs: 2,
    });
}

#[test]
fn vanilla_rnns() {
    check(Cfg {
        mode: "rnn_tanh",
        gates: 1,
        t: 3,
        n: 2,
        input: 2,
        h: 3,
        layers: 1,
        dirs: 2,
    });
    check(Cfg {
        mode: "rnn_relu",
        gates: 1,
        t: 3,
        n: 2,
        input: 2,
        h: 3,
        layers: 2,
        dirs: 1,
    });
}

#[test]
fn gluon_style_zero_states_and_param_concat() {
    // What gluon's LSTM layer exports: begin states as `_zeros` with an unknown batch dim and
    // the weights flattened and joined by `_rnn_param_concat`.
    let (t, n, i, h) = (2usize, 3usize, 2usize, 2usize);
    let names = [
        "l0_i2h_weight",
        "l0_h2h_weight",
        "l0_i2h_bias",
        "l0_h2h_bias",
    ];
    let shapes = [vec![4 * h, i], vec![4 * h, h], vec![4 * h], vec![4 * h]];
    let mut nodes = vec![json!({"op": "null", "name": "data"})];
    let mut flat = Vec::new();
    for name in names {
        nodes.push(json!({"op": "null", "name": name}));
        let v = nodes.len() - 1;
        nodes.push(json!({"op": "Reshape", "name": format!("{name}_flat"), "attrs": {"shape": "(-1,)"}, "inputs": [[v, 0, 0]]}));
        flat.push(json!([nodes.len() - 1, 0, 0]));
    }
    nodes.push(json!({"op": "_rnn_param_concat", "name": "cat", "attrs": {"dim": "0", "num_args": "4"}, "inputs": flat}));
    let cat = nodes.len() - 1;
    nodes.push(json!({"op": "_zeros", "name": "h0", "attrs": {"shape": format!("(1, 0, {h})")}}));
    nodes.push(json!({"op": "_zeros", "name": "c0", "attrs": {"shape": format!("(1, 0, {h})")}}));
    let z = nodes.len() - 2;
    nodes.push(
        json!({"op": "RNN", "name": "rnn", "attrs": {"mode": "lstm", "state_size": h.to_string(),
        "num_layers": "1", "state_outputs": "True"},
        "inputs": [[0, 0, 0], [cat, 0, 0], [z, 0, 0], [z + 1, 0, 0]]}),
    );
    let r = nodes.len() - 1;
    let sym = Symbol::from_value(&json!({"nodes": nodes, "heads": [[r, 0, 0]]})).unwrap();

    let x = values(t * n * i, 7);
    let tensors: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| {
            Tensor::from_vec(values(s.iter().product(), 10 + k as u64), s.clone()).unwrap()
        })
        .collect();
    let params: BTreeMap<String, TensorType> = names
        .iter()
        .zip(&tensors)
        .map(|(n, t)| (n.to_string(), t.ty()))
        .collect();
    let xt = Tensor::from_vec(x.clone(), [t, n, i]).unwrap();
    let conv = convert(
        &sym,
        &[("data".into(), TensorType::new([t, n, i], DType::F32))],
        &params,
    )
    .unwrap();
    // The unused state outputs are not in the graph; every weight is.
    assert_eq!(conv.graph.outputs().len(), 1);
    assert_eq!(conv.params.len(), 4);
    let mut bind = vec![("data", xt.view())];
    for (name, t) in names.iter().zip(&tensors) {
        bind.push((name, t.view()));
    }
    let got = conv.graph.run(&bind).unwrap();
    let packed: Vec<f64> = tensors.iter().flat_map(|t| t.to_f64_vec()).collect();
    let zeros = vec![0.0; n * h];
    let c = Cfg {
        mode: "lstm",
        gates: 4,
        t,
        n,
        input: i,
        h,
        layers: 1,
        dirs: 1,
    };
    let (out, _, _) = reference(
        &c,
        &x.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &packed,
        &zeros,
        &zeros,
    );
    for (a, b) in got[0].to_f64_vec().iter().zip(&out) {
        assert!((a - b).abs() < 1e-5, "got {a}, want {b}");
    }
}

#[test]
fn rnn_errors() {
    let sym = Symbol::from_value(&json!({"nodes": [
        {"op": "null", "name": "data"}, {"op": "null", "name": "params"},
        {"op": "null", "name": "h0"},
        {"op": "RNN", "name": "rnn", "attrs": {"mode": "gru", "state_size": "2"},
         "inputs": [[0, 0, 0], [1, 0, 0], [2, 0, 0]]}], "heads": [[3, 0, 0]]}))
    .unwrap();
    let f = |d: &[usize]| TensorType::new(d.to_vec(), DType::F32);
    let inputs = vec![
        ("data".to_string(), f(&[2, 1, 3])),
        ("h0".to_string(), f(&[1, 1, 2])),
    ];
    let params: BTreeMap<String, TensorType> = [("params".to_string(), f(&[10]))].into();
    let e = convert(&sym, &inputs, &params).unwrap_err().to_string();
    assert!(e.contains("needs [42]") && e.contains("\"rnn\""), "{e}");
}
