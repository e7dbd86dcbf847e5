//! Bad calls return errors that name the op and the shapes, dtypes or values involved; none
//! panics.

use kiln_frontend::nd::{self, ConvOpts, PoolOpts};
use kiln_frontend::{s, DType, NDArray, Result};

type Call = Box<dyn Fn() -> Result<()>>;

fn drop_value<T>(r: Result<T>) -> Result<()> {
    r.map(|_| ())
}

#[test]
fn bad_calls_are_errors_naming_the_problem() {
    let m23 = nd::ones([2, 3]).unwrap();
    let v2 = NDArray::from_slice(&[1.0f32, 2.0]);
    let i2 = NDArray::from_slice(&[1i64, 2]);
    let cases: Vec<(&str, Call, &[&str])> = vec![
        (
            "broadcast mismatch in an operator",
            Box::new({
                let (a, b) = (m23.clone(), v2.clone());
                move || drop_value(&a + &b)
            }),
            &["add", "[2, 3]", "[2]"],
        ),
        (
            "dtype mismatch in an operator",
            Box::new({
                let (a, b) = (v2.clone(), i2.clone());
                move || drop_value(&a * &b)
            }),
            &["mul", "f32", "i64"],
        ),
        (
            "dot with mismatched inner dims",
            Box::new({
                let a = m23.clone();
                move || drop_value(nd::dot(&a, &a))
            }),
            &["dot", "[2, 3]"],
        ),
        (
            "reshape to a size that does not divide",
            Box::new({
                let a = m23.clone();
                move || drop_value(a.reshape(&[4, -1]))
            }),
            &["reshape", "[2, 3]", "4"],
        ),
        (
            "reshape with two inferred dims",
            Box::new({
                let a = m23.clone();
                move || drop_value(a.reshape(&[-1, -1]))
            }),
            &["reshape", "-1"],
        ),
        (
            "reduction over a missing axis",
            Box::new({
                let a = m23.clone();
                move || drop_value(a.sum_axis(2))
            }),
            &["sum", "axis 2"],
        ),
        (
            "index out of range",
            Box::new({
                let a = m23.clone();
                move || drop_value(a.index(&s![2]))
            }),
            &[
                "index",
                "index 2 is out of range for axis 0 of size 2",
                "[2, 3]",
            ],
        ),
        (
            "negative index out of range",
            Box::new({
                let a = m23.clone();
                move || drop_value(a.index(&s![.., -4]))
            }),
            &["index -4", "axis 1 of size 3"],
        ),
        (
            "too many indices",
            Box::new({
                let a = m23.clone();
                move || drop_value(a.index(&s![0, 0, 0]))
            }),
            &["too many indices (3)", "[2, 3]"],
        ),
        (
            "zero step",
            Box::new({
                let a = m23.clone();
                move || drop_value(a.index(&s![..;0]))
            }),
            &["index", "step"],
        ),
        (
            "row out of range",
            Box::new({
                let a = m23.clone();
                move || drop_value(a.at(5))
            }),
            &["at", "index 5", "[2, 3]"],
        ),
        (
            "leading-axis range out of bounds",
            Box::new({
                let a = m23.clone();
                move || drop_value(a.slice_axis0(1..5))
            }),
            &["slice_axis0", "rows 1..5", "[2, 3]"],
        ),
        (
            "indexed write out of range",
            Box::new({
                let a = m23.clone();
                move || a.set(&s![0, 3], 1.0)
            }),
            &["set", "index 3", "axis 1 of size 3"],
        ),
        (
            "indexed write of a value that does not broadcast",
            Box::new({
                let (a, b) = (m23.clone(), v2.clone());
                move || a.set_array(&s![0], &b)
            }),
            &["set_array", "[2]", "[3]"],
        ),
        (
            "in-place add of a larger operand",
            Box::new({
                let (a, b) = (v2.clone(), m23.clone());
                move || a.add_assign_(&b)
            }),
            &["add_assign_", "[2, 3]", "[2]"],
        ),
        (
            "copyto with another shape",
            Box::new({
                let (a, b) = (v2.clone(), m23.clone());
                move || a.copyto(&b)
            }),
            &["copyto", "[2]", "[2, 3]"],
        ),
        (
            "to_vec with the wrong dtype",
            Box::new({
                let a = m23.clone();
                move || drop_value(a.to_vec::<i64>())
            }),
            &["to_vec", "i64", "f32"],
        ),
        (
            "as_scalar on a vector",
            Box::new({
                let a = v2.clone();
                move || drop_value(a.as_scalar::<f32>())
            }),
            &["as_scalar", "exactly one element", "[2]"],
        ),
        (
            "as_scalar with the wrong dtype",
            Box::new(|| drop_value(NDArray::scalar(1i32).as_scalar::<f32>())),
            &["as_scalar", "f32", "i32"],
        ),
        (
            "from_vec with the wrong length",
            Box::new(|| drop_value(NDArray::from_vec(vec![1.0f32; 5], [2, 3]))),
            &["from_vec", "[2, 3]", "6", "5"],
        ),
        (
            "ragged nested data",
            Box::new(|| drop_value(NDArray::from_nested(&vec![vec![1.0f32, 2.0], vec![3.0]]))),
            &["array", "ragged", "[2]"],
        ),
        (
            "concat of mismatched shapes",
            Box::new({
                let (a, b) = (m23.clone(), v2.clone());
                move || drop_value(nd::concat(&[&a, &b], 0))
            }),
            &["concat", "[2, 3]", "[2]"],
        ),
        (
            "concat of nothing",
            Box::new(|| drop_value(nd::concat(&[], 0))),
            &["concat", "at least one"],
        ),
        (
            "uneven split",
            Box::new({
                let a = m23.clone();
                move || drop_value(a.split(2, 1))
            }),
            &["split", "length 3", "[2, 3]", "2 equal parts"],
        ),
        (
            "broadcast_to an incompatible shape",
            Box::new({
                let a = m23.clone();
                move || drop_value(a.broadcast_to([4, 3]))
            }),
            &["broadcast_to", "[2, 3]", "[4, 3]"],
        ),
        (
            "transpose with a repeated axis",
            Box::new({
                let a = m23.clone();
                move || drop_value(a.transpose_axes(&[0, 0]))
            }),
            &["transpose"],
        ),
        (
            "exp of integers",
            Box::new({
                let a = i2.clone();
                move || drop_value(a.exp())
            }),
            &["exp", "i64"],
        ),
        (
            "where with mismatched branch dtypes",
            Box::new({
                let (a, b) = (v2.clone(), i2.clone());
                move || drop_value(nd::where_cond(&a, &a, &b))
            }),
            &["where", "f32", "i64"],
        ),
        (
            "convolution of a vector",
            Box::new({
                let a = v2.clone();
                move || drop_value(nd::convolution(&a, &a, None, &ConvOpts::new()))
            }),
            &["convolution", "[2]"],
        ),
        (
            "pooling of a matrix",
            Box::new({
                let a = m23.clone();
                move || drop_value(nd::pooling(&a, &PoolOpts::max(2)))
            }),
            &["pooling", "[2, 3]"],
        ),
        (
            "dropout probability out of range",
            Box::new({
                let a = v2.clone();
                move || drop_value(nd::dropout(&a, 1.0))
            }),
            &["dropout", "[0, 1)", "1"],
        ),
        (
            "arange with a zero step",
            Box::new(|| drop_value(nd::arange_step(0.0, 1.0, 0.0))),
            &["arange", "step"],
        ),
        (
            "multinomial of integer weights",
            Box::new({
                let a = i2.clone();
                move || drop_value(nd::random::multinomial(&a, 1))
            }),
            &["multinomial", "i64"],
        ),
        (
            "cast then reading with the old dtype",
            Box::new({
                let a = v2.clone();
                move || drop_value(a.cast(DType::I32)?.to_vec::<f32>())
            }),
            &["to_vec", "f32", "i32"],
        ),
    ];
    let mut failures = Vec::new();
    for (what, call, needles) in &cases {
        match call() {
            Ok(()) => failures.push(format!("{what}: expected an error, got Ok")),
            Err(e) => {
                let msg = e.to_string();
                for n in needles.iter() {
                    if !msg.contains(n) {
                        failures.push(format!("{what}: message {msg:?} lacks {n:?}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
