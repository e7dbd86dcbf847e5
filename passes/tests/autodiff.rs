use kiln_ir::{BinaryOp, DType, Graph, Op, TensorType, UnaryOp};
use kiln_passes::autodiff::differentiate;

#[test]
fn doc_example() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new([3], DType::F32)).unwrap();
    let w = g.add_param("w", TensorType::new([3], DType::F32)).unwrap();
    let xw = g.add_op(Op::Binary { f: BinaryOp::Mul }, &[x, w]).unwrap();
    let y = g.add_op(Op::Unary { f: UnaryOp::Relu }, &[xw]).unwrap();
    g.set_outputs(vec![y]).unwrap();
    let d = differentiate(&g, &["w"]).unwrap();
    assert_eq!(
        d.forward.to_text(),
        "%0 = input \"x\" : f32[3]\n%1 = param \"w\" : f32[3]\n%2 = mul(%0, %1) : f32[3]\n\
         %3 = relu(%2) : f32[3]\nreturn %3, %2, %0\n"
    );
    assert_eq!(
        d.backward.to_text(),
        "%0 = input \"saved:0\" : f32[3]\n%1 = input \"saved:1\" : f32[3]\n\
         %2 = input \"head:0\" : f32[3]\n\
         %3 = gt_scalar(%0) {scalar=0.0, reverse=false} : f32[3]\n\
         %4 = mul(%2, %3) : f32[3]\n%5 = mul(%4, %1) : f32[3]\nreturn %5\n"
    );
}
