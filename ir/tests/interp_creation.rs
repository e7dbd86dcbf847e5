//! Reference semantics of the creation and random ops, through the public `interp::eval` and
//! `infer::infer`: fixed values for the deterministic ops, reproducibility and sample
//! statistics for the random ones.

use kiln_ir::{infer::infer, interp::eval, DType, Element, Op, Result, Shape, Tensor, TensorType};

fn t<T: Element>(v: Vec<T>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape).unwrap()
}

fn make(op: &Op) -> Result<Tensor> {
    eval(op, &[])
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var)
}

const N: usize = 100_000;

fn arange(start: f64, stop: f64, step: f64, dtype: DType) -> Op {
    Op::Arange {
        start,
        stop,
        step,
        dtype,
    }
}

fn linspace(start: f64, stop: f64, num: usize, endpoint: bool) -> Op {
    Op::Linspace {
        start,
        stop,
        num,
        endpoint,
        dtype: DType::F64,
    }
}

fn uniform(low: f64, high: f64, shape: &[usize], dtype: DType, seed: u64) -> Op {
    Op::RandomUniform {
        low,
        high,
        shape: Shape::new(shape),
        dtype,
        seed,
    }
}

fn normal(loc: f64, scale: f64, shape: &[usize], dtype: DType, seed: u64) -> Op {
    Op::RandomNormal {
        loc,
        scale,
        shape: Shape::new(shape),
        dtype,
        seed,
    }
}

fn bernoulli(p: f64, shape: &[usize], dtype: DType, seed: u64) -> Op {
    Op::RandomBernoulli {
        p,
        shape: Shape::new(shape),
        dtype,
        seed,
    }
}

fn randint(low: i64, high: i64, shape: &[usize], dtype: DType, seed: u64) -> Op {
    Op::RandomRandint {
        low,
        high,
        shape: Shape::new(shape),
        dtype,
        seed,
    }
}

// ----- deterministic creation ----------------------------------------------------------------

#[test]
fn full_fills_and_converts_the_value() {
    let f = make(&Op::Full {
        shape: Shape::from([2, 3]),
        dtype: DType::I32,
        value: 7.9,
    })
    .unwrap();
    assert_eq!(f.ty(), TensorType::new([2, 3], DType::I32));
    assert_eq!(f.as_slice::<i32>().unwrap(), &[7; 6]);
    let b = make(&Op::Full {
        shape: Shape::scalar(),
        dtype: DType::Bool,
        value: 2.0,
    })
    .unwrap();
    assert_eq!(b.as_slice::<bool>().unwrap(), &[true]);
    let z = make(&Op::Full {
        shape: Shape::from([0, 4]),
        dtype: DType::F32,
        value: 1.0,
    })
    .unwrap();
    assert_eq!(z.shape(), &Shape::from([0, 4]));
    assert!(z.to_f64_vec().is_empty());
}

#[test]
fn arange_counts_ceil_of_span_over_step() {
    let a = make(&arange(0.0, 5.0, 1.0, DType::F32)).unwrap();
    assert_eq!(a.ty(), TensorType::new([5], DType::F32));
    assert_eq!(a.to_f64_vec(), vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    let a = make(&arange(1.0, 2.0, 0.3, DType::F64)).unwrap();
    let want = [1.0, 1.3, 1.6, 1.9];
    for (g, w) in a.to_f64_vec().iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{g} vs {w}");
    }
    assert_eq!(a.shape(), &Shape::from([4]));
    let a = make(&arange(5.0, 0.0, -2.0, DType::I64)).unwrap();
    assert_eq!(a.as_slice::<i64>().unwrap(), &[5, 3, 1]);
    // The step points away from stop: empty.
    let a = make(&arange(0.0, 5.0, -1.0, DType::F32)).unwrap();
    assert_eq!(a.shape(), &Shape::from([0]));
    let a = make(&arange(3.0, 3.0, 1.0, DType::F32)).unwrap();
    assert_eq!(a.shape(), &Shape::from([0]));
    // Values are computed in f64 and truncated to integer dtypes.
    let a = make(&arange(0.0, 5.0, 1.5, DType::I32)).unwrap();
    assert_eq!(a.as_slice::<i32>().unwrap(), &[0, 1, 3, 4]);
    let a = make(&arange(-1.0, 1.0, 0.5, DType::U8)).unwrap();
    assert_eq!(a.as_slice::<u8>().unwrap(), &[0, 0, 0, 0]);
}

#[test]
fn linspace_matches_numpy() {
    assert_eq!(
        make(&linspace(0.0, 1.0, 5, true)).unwrap().to_f64_vec(),
        vec![0.0, 0.25, 0.5, 0.75, 1.0]
    );
    assert_eq!(
        make(&linspace(0.0, 1.0, 5, false)).unwrap().to_f64_vec(),
        vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8]
    );
    assert_eq!(
        make(&linspace(1.0, 0.0, 3, true)).unwrap().to_f64_vec(),
        vec![1.0, 0.5, 0.0]
    );
    // The endpoint is exact even where start + i*step would round off.
    let v = make(&linspace(0.0, 0.3, 4, true)).unwrap().to_f64_vec();
    assert_eq!(v[3], 0.3);
    assert_eq!(
        make(&linspace(2.5, 9.0, 1, true)).unwrap().to_f64_vec(),
        vec![2.5]
    );
    assert_eq!(
        make(&linspace(2.5, 9.0, 1, false)).unwrap().to_f64_vec(),
        vec![2.5]
    );
    assert!(make(&linspace(0.0, 1.0, 0, true))
        .unwrap()
        .to_f64_vec()
        .is_empty());
    let i = make(&Op::Linspace {
        start: 0.0,
        stop: 10.0,
        num: 4,
        endpoint: true,
        dtype: DType::I32,
    })
    .unwrap();
    assert_eq!(i.as_slice::<i32>().unwrap(), &[0, 3, 6, 10]);
}

// ----- random ----------------------------------------------------------------------------------

#[test]
fn random_ops_are_pure_functions_of_the_seed() {
    let ops = |seed| {
        vec![
            uniform(-1.0, 1.0, &[4, 5], DType::F32, seed),
            normal(0.0, 1.0, &[20], DType::F64, seed),
            bernoulli(0.5, &[64], DType::U8, seed),
            randint(0, 1000, &[20], DType::I64, seed),
        ]
    };
    for (a, b) in ops(7).iter().zip(ops(7)) {
        assert_eq!(make(a).unwrap(), make(&b).unwrap(), "{a:?}");
    }
    for (a, b) in ops(7).iter().zip(ops(8)) {
        assert_ne!(make(a).unwrap(), make(&b).unwrap(), "{a:?}");
    }
    let probs = t(vec![1.0f64; 10], &[10]);
    let m = |seed| {
        eval(
            &Op::Multinomial {
                num_samples: 20,
                seed,
            },
            &[probs.view()],
        )
        .unwrap()
    };
    assert_eq!(m(3), m(3));
    assert_ne!(m(3), m(4));
}

#[test]
fn uniform_has_the_right_range_mean_and_variance() {
    for dtype in [DType::F32, DType::F64] {
        let u = make(&uniform(-2.0, 6.0, &[N], dtype, 11)).unwrap();
        assert_eq!(u.ty(), TensorType::new([N], dtype));
        let v = u.to_f64_vec();
        assert!(v.iter().all(|&x| (-2.0..6.0).contains(&x)));
        let (mean, var) = mean_var(&v);
        // mean 2, variance 8^2/12 = 5.333; standard errors are 0.007 and 0.02.
        assert!((mean - 2.0).abs() < 0.05, "{dtype}: mean {mean}");
        assert!((var - 64.0 / 12.0).abs() < 0.1, "{dtype}: var {var}");
    }
    // A range that is a single f32 ulp wide never yields high, though many f64 draws round
    // up to it.
    let low = 1.0f32;
    let high = f32::from_bits(low.to_bits() + 1);
    let u = make(&uniform(low as f64, high as f64, &[1000], DType::F32, 5)).unwrap();
    assert!(u.as_slice::<f32>().unwrap().iter().all(|&x| x == low));
}

#[test]
fn normal_has_the_right_mean_and_variance() {
    for dtype in [DType::F32, DType::F64] {
        let v = make(&normal(2.0, 3.0, &[N / 100, 100], dtype, 21))
            .unwrap()
            .to_f64_vec();
        let (mean, var) = mean_var(&v);
        // Standard errors: 3/sqrt(N) = 0.0095 and 9*sqrt(2/N) = 0.04.
        assert!((mean - 2.0).abs() < 0.05, "{dtype}: mean {mean}");
        assert!((var - 9.0).abs() < 0.2, "{dtype}: var {var}");
    }
    let zero = make(&normal(1.5, 0.0, &[3], DType::F64, 1)).unwrap();
    assert_eq!(zero.to_f64_vec(), vec![1.5; 3]);
}

#[test]
fn bernoulli_frequency_matches_p_in_every_dtype() {
    for dtype in DType::ALL {
        let b = make(&bernoulli(0.3, &[N], dtype, 31)).unwrap();
        assert_eq!(b.dtype(), dtype);
        let v = b.to_f64_vec();
        assert!(v.iter().all(|&x| x == 0.0 || x == 1.0));
        let (mean, _) = mean_var(&v);
        assert!((mean - 0.3).abs() < 0.01, "{dtype}: mean {mean}");
    }
    assert!(make(&bernoulli(0.0, &[1000], DType::F32, 1))
        .unwrap()
        .to_f64_vec()
        .iter()
        .all(|&x| x == 0.0));
    assert!(make(&bernoulli(1.0, &[1000], DType::F32, 1))
        .unwrap()
        .to_f64_vec()
        .iter()
        .all(|&x| x == 1.0));
}

#[test]
fn randint_covers_its_range_uniformly() {
    for dtype in [DType::I32, DType::I64, DType::F32, DType::F64] {
        let v = make(&randint(-3, 5, &[N], dtype, 41)).unwrap().to_f64_vec();
        let mut counts = [0usize; 8];
        for &x in &v {
            assert!(x.fract() == 0.0 && (-3.0..5.0).contains(&x), "{dtype}: {x}");
            counts[(x + 3.0) as usize] += 1;
        }
        // Each of the 8 values has expected count 12500, standard error ~105.
        assert!(
            counts.iter().all(|&c| c.abs_diff(N / 8) < 600),
            "{dtype}: {counts:?}"
        );
        let (mean, var) = mean_var(&v);
        assert!((mean - 0.5).abs() < 0.05, "{dtype}: mean {mean}");
        assert!((var - 63.0 / 12.0).abs() < 0.1, "{dtype}: var {var}");
    }
    let u = make(&randint(250, 256, &[1000], DType::U8, 3)).unwrap();
    let u = u.as_slice::<u8>().unwrap();
    assert!(u.iter().all(|&x| x >= 250));
    assert!(u.contains(&255) && u.contains(&250));
    let wide = make(&randint(i64::MIN, i64::MAX, &[4], DType::I64, 3)).unwrap();
    assert_eq!(wide.shape(), &Shape::from([4]));
}

#[test]
fn multinomial_frequencies_follow_the_row_probabilities() {
    // Unnormalized rows; zero-probability categories are never drawn.
    let probs = t(vec![1.0f32, 0.0, 3.0, 0.0, 0.0, 2.0], &[2, 3]);
    let s = eval(
        &Op::Multinomial {
            num_samples: N,
            seed: 51,
        },
        &[probs.view()],
    )
    .unwrap();
    assert_eq!(s.ty(), TensorType::new([2, N], DType::I64));
    let s = s.as_slice::<i64>().unwrap();
    let mut counts = [0usize; 3];
    for &c in &s[..N] {
        counts[c as usize] += 1;
    }
    assert_eq!(counts[1], 0);
    let f0 = counts[0] as f64 / N as f64;
    // p = 0.25, standard error 0.0014.
    assert!((f0 - 0.25).abs() < 0.01, "{counts:?}");
    assert!(s[N..].iter().all(|&c| c == 2));
    // Leading batch axes and one sample per row.
    let probs = t(vec![0.0f64, 1.0, 1.0, 0.0, 0.5, 0.5, 1.0, 0.0], &[2, 2, 2]);
    let s = eval(
        &Op::Multinomial {
            num_samples: 1,
            seed: 1,
        },
        &[probs.view()],
    )
    .unwrap();
    assert_eq!(s.shape(), &Shape::from([2, 2, 1]));
    let s = s.as_slice::<i64>().unwrap();
    assert_eq!((s[0], s[1], s[3]), (1, 0, 0));
    assert!(s[2] == 0 || s[2] == 1);
}

#[test]
fn shuffle_permutes_rows_only() {
    let x = t((0..20).collect::<Vec<i32>>(), &[2, 10]);
    // Rank 2 [10, 2] with row k = [k, 100 + k].
    let rows: Vec<i32> = (0..10).flat_map(|k| [k, 100 + k]).collect();
    let x2 = t(rows, &[10, 2]);
    let s = eval(&Op::Shuffle { seed: 61 }, &[x2.view()]).unwrap();
    assert_eq!(s.shape(), x2.shape());
    let v = s.as_slice::<i32>().unwrap();
    let mut firsts: Vec<i32> = v
        .chunks(2)
        .map(|r| {
            assert_eq!(r[1], r[0] + 100, "rows stay whole: {v:?}");
            r[0]
        })
        .collect();
    assert_ne!(
        firsts,
        (0..10).collect::<Vec<_>>(),
        "seed 61 should move something"
    );
    firsts.sort();
    assert_eq!(firsts, (0..10).collect::<Vec<_>>());
    assert_eq!(s, eval(&Op::Shuffle { seed: 61 }, &[x2.view()]).unwrap());
    assert_ne!(s, eval(&Op::Shuffle { seed: 62 }, &[x2.view()]).unwrap());
    // Two rows of ten: each output row is one of the input rows.
    let s = eval(&Op::Shuffle { seed: 1 }, &[x.view()]).unwrap();
    let v = s.as_slice::<i32>().unwrap();
    assert!(v[0] == 0 || v[0] == 10);
    assert_eq!(v[1], v[0] + 1);
    let empty = t(Vec::<f32>::new(), &[0, 3]);
    assert_eq!(
        eval(&Op::Shuffle { seed: 1 }, &[empty.view()]).unwrap(),
        empty
    );
}

// ----- inference and bad calls ----------------------------------------------------------------

#[test]
fn infer_gives_creation_types() {
    assert_eq!(
        infer(&arange(0.0, 10.0, 3.0, DType::I32), &[]).unwrap(),
        TensorType::new([4], DType::I32)
    );
    assert_eq!(
        infer(
            &Op::Multinomial {
                num_samples: 5,
                seed: 0
            },
            &[TensorType::new([3, 7], DType::F32)]
        )
        .unwrap(),
        TensorType::new([3, 5], DType::I64)
    );
}

#[test]
fn bad_creation_calls_are_errors_with_clear_messages() {
    let cases: Vec<(Op, &[&str])> = vec![
        (
            arange(0.0, 1.0, 0.0, DType::F32),
            &["arange", "step must not be 0"],
        ),
        (
            arange(0.0, f64::NAN, 1.0, DType::F32),
            &["arange", "finite"],
        ),
        (
            arange(0.0, 1e300, 1e-300, DType::F32),
            &["arange", "too many"],
        ),
        (
            linspace(0.0, f64::INFINITY, 3, true),
            &["linspace", "finite"],
        ),
        (
            uniform(1.0, 1.0, &[2], DType::F32, 0),
            &["random_uniform", "low=1", "high=1"],
        ),
        (
            uniform(2.0, 1.0, &[2], DType::F64, 0),
            &["random_uniform", "low < high"],
        ),
        (
            uniform(0.0, 1.0, &[2], DType::I32, 0),
            &["random_uniform", "floating-point", "i32"],
        ),
        (
            uniform(1.0, 1.0 + 1e-12, &[2], DType::F32, 0),
            &["random_uniform", "equal in f32"],
        ),
        (
            uniform(0.0, 1e39, &[2], DType::F32, 0),
            &["random_uniform", "finite in f32"],
        ),
        (
            uniform(-1e308, 1e308, &[2], DType::F64, 0),
            &["random_uniform", "finite"],
        ),
        (
            normal(0.0, -1.0, &[2], DType::F32, 0),
            &["random_normal", "scale=-1"],
        ),
        (
            normal(f64::NAN, 1.0, &[2], DType::F32, 0),
            &["random_normal", "loc=NaN"],
        ),
        (
            normal(0.0, 1.0, &[2], DType::U8, 0),
            &["random_normal", "u8"],
        ),
        (
            bernoulli(1.5, &[2], DType::F32, 0),
            &["random_bernoulli", "p=1.5"],
        ),
        (
            bernoulli(f64::NAN, &[2], DType::F32, 0),
            &["random_bernoulli", "p=NaN"],
        ),
        (
            randint(3, 3, &[2], DType::I32, 0),
            &["random_randint", "low=3", "high=3"],
        ),
        (
            randint(0, 2, &[2], DType::Bool, 0),
            &["random_randint", "bool"],
        ),
        (
            randint(0, 300, &[2], DType::U8, 0),
            &["random_randint", "[0, 300)", "u8"],
        ),
        (
            randint(0, 1 << 40, &[2], DType::I32, 0),
            &["random_randint", "i32"],
        ),
        (
            randint(0, 1 << 30, &[2], DType::F32, 0),
            &["random_randint", "f32"],
        ),
        (
            Op::Full {
                shape: Shape::from([1usize << 62, 4]),
                dtype: DType::F32,
                value: 0.0,
            },
            &["full", "too large"],
        ),
    ];
    for (op, needles) in cases {
        let msg = match make(&op) {
            Ok(r) => panic!("{op:?}: expected an error, got {r:?}"),
            Err(e) => e.to_string(),
        };
        for n in needles {
            assert!(msg.contains(n), "{op:?}: message {msg:?} lacks {n:?}");
        }
    }
    // Creation ops take no inputs.
    let x = t(vec![1.0f32], &[1]);
    let e = eval(&arange(0.0, 1.0, 1.0, DType::F32), &[x.view()]).unwrap_err();
    assert!(e.to_string().contains("0 input"), "{e}");
}

#[test]
fn bad_multinomial_and_shuffle_calls_are_errors() {
    let m = Op::Multinomial {
        num_samples: 2,
        seed: 0,
    };
    let cases: Vec<(Tensor, &[&str])> = vec![
        (
            t(vec![1i32, 2], &[2]),
            &["multinomial", "floating-point", "i32 [2]"],
        ),
        (t(vec![1.0f32], &[]), &["multinomial", "[.., K]", "[]"]),
        (
            t(Vec::<f32>::new(), &[3, 0]),
            &["multinomial", "category", "[3, 0]"],
        ),
        (
            t(vec![0.5f64, -0.1], &[1, 2]),
            &["multinomial", "-0.1", "row 0"],
        ),
        (
            t(vec![1.0f64, 1.0, 0.0, 0.0], &[2, 2]),
            &["multinomial", "row 1", "sums to 0"],
        ),
        (t(vec![f64::NAN, 1.0], &[2]), &["multinomial", "NaN"]),
        (t(vec![f64::INFINITY, 1.0], &[2]), &["multinomial", "inf"]),
    ];
    for (probs, needles) in cases {
        let msg = eval(&m, &[probs.view()]).unwrap_err().to_string();
        for n in needles {
            assert!(msg.contains(n), "{probs:?}: message {msg:?} lacks {n:?}");
        }
    }
    let e = eval(&Op::Shuffle { seed: 0 }, &[t(vec![1.0f32], &[]).view()]).unwrap_err();
    assert!(
        e.to_string().contains("shuffle") && e.to_string().contains("rank"),
        "{e}"
    );
}
