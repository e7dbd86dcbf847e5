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
