//! The graph type: building, rewriting, its text/DOT/JSON forms and running it.

use kiln_ir::graph::{NodeKind, FORMAT_VERSION};
use kiln_ir::vjp::VjpBuilder;
use kiln_ir::{BinaryOp, DType, Error, Graph, NodeId, Op, Shape, Tensor, TensorType, UnaryOp};

fn f32t<const N: usize>(dims: [usize; N]) -> TensorType {
    TensorType::new(dims, DType::F32)
}

fn add() -> Op {
    Op::Binary { f: BinaryOp::Add }
}

fn mul() -> Op {
    Op::Binary { f: BinaryOp::Mul }
}

fn relu() -> Op {
    Op::Unary { f: UnaryOp::Relu }
}

fn tensor(v: &[f32], dims: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), dims).unwrap()
}

/// `relu((x + b) * 0.5)` and `x + b`.
fn small_graph() -> (Graph, [NodeId; 6]) {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t([2, 3])).unwrap();
    let b = g.add_param("b", f32t([3])).unwrap();
    let half = g.add_const(Tensor::scalar(0.5f32)).unwrap();
    let s = g.add_op(add(), &[x, b]).unwrap();
    let m = g.add_op(mul(), &[s, half]).unwrap();
    let r = g.add_op(relu(), &[m]).unwrap();
    g.set_outputs(vec![r, s]).unwrap();
    (g, [x, b, half, s, m, r])
}

const SMALL_TEXT: &str = "\
%0 = input \"x\" : f32[2,3]
%1 = param \"b\" : f32[3]
%2 = const 0.5 : f32[]
%3 = add(%0, %1) : f32[2,3]
%4 = mul(%3, %2) : f32[2,3]
%5 = relu(%4) : f32[2,3]
return %5, %3
";

// ----- building --------------------------------------------------------------------------------

#[test]
fn inputs_and_params_are_bound_by_unique_names() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t([2])).unwrap();
    let w = g.add_param("w", f32t([3])).unwrap();
    let y = g.add_input("y", TensorType::new([4], DType::I64)).unwrap();
    assert_eq!(g.inputs(), vec![("x", x), ("y", y)]);
    assert_eq!(g.params(), vec![("w", w)]);
    assert_eq!(g.bindings(), vec![("x", x), ("w", w), ("y", y)]);
    assert_eq!(g.input_id("w"), Some(w));
    assert_eq!(g.input_id("z"), None);
    assert_eq!(g.len(), 3);
    assert_eq!(
        g.node(w).unwrap().kind,
        NodeKind::Param { name: "w".into() }
    );

    let e = g.add_input("w", f32t([2])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "graph: an input or parameter named \"w\" already exists"
    );
    let e = g.add_param("x", f32t([2])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "graph: an input or parameter named \"x\" already exists"
    );
    assert!(g.add_input("", f32t([2])).is_err());
    let e = g
        .add_input("huge", f32t([1 << 40, 1 << 40]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "graph: input \"huge\": type f32[1099511627776,1099511627776] is too large to hold"
    );
    assert_eq!(g.len(), 3);
}

#[test]
fn ops_get_inferred_types_and_ordered_inputs() {
    let (g, [x, b, half, s, m, r]) = small_graph();
    assert_eq!(g.ty(s).unwrap(), &f32t([2, 3]));
    assert_eq!(
        g.ty(half).unwrap(),
        &TensorType::new(Shape::scalar(), DType::F32)
    );
    assert_eq!(g.inputs_of(s).unwrap(), vec![x, b]);
    assert_eq!(g.inputs_of(m).unwrap(), vec![s, half]);
    assert_eq!(g.inputs_of(x).unwrap(), vec![]);
    assert_eq!(g.users(s).unwrap(), vec![m]);
    assert_eq!(g.use_count(s).unwrap(), 2, "one user and one output slot");
    assert_eq!(g.op(r).unwrap(), Some(&relu()));
    assert_eq!(g.op(x).unwrap(), None);
    assert_eq!(g.outputs(), &[r, s]);
    assert_eq!(g.topo_order(), vec![x, b, half, s, m, r]);
}

#[test]
fn the_same_input_twice_keeps_both_positions() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t([2])).unwrap();
    let y = g.add_op(mul(), &[x, x]).unwrap();
    assert_eq!(g.inputs_of(y).unwrap(), vec![x, x]);
    assert_eq!(g.users(x).unwrap(), vec![y]);
    assert_eq!(g.use_count(x).unwrap(), 2);
    g.set_outputs(vec![y]).unwrap();
    let out = g.run(&[("x", tensor(&[3.0, -2.0], &[2]).view())]).unwrap();
    assert_eq!(out[0].to_f64_vec(), vec![9.0, 4.0]);
}

#[test]
fn bad_shapes_give_the_ops_error_and_add_nothing() {
    let mut g = Graph::new();
    let a = g.add_input("a", f32t([2, 3])).unwrap();
    let b = g.add_input("b", f32t([4])).unwrap();
    let e = g.add_op(add(), &[a, b]).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e:?}");
    assert_eq!(e.to_string(), "add: cannot broadcast shapes [2, 3] and [4]");
    assert_eq!(g.len(), 2);
}

#[test]
fn unknown_node_ids_are_errors() {
    let (mut g, _) = small_graph();
    let stranger = NodeId::new(99);
    let e = g.add_op(relu(), &[stranger]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "graph: relu: input 0 is node 99, which is not in this graph"
    );
    assert_eq!(
        g.set_outputs(vec![stranger]).unwrap_err().to_string(),
        "graph: output 0 is node 99, which is not in this graph"
    );
    assert!(g.node(stranger).is_err());
    assert!(g.ty(stranger).is_err());
    assert!(g.inputs_of(stranger).is_err());
    assert!(g.remove_node(stranger).is_err());
}

#[test]
fn vjp_builder_appends_nodes() {
    let mut g = Graph::new();
    let x = g
        .add_input("x", TensorType::new([2, 5], DType::F64))
        .unwrap();
    assert_eq!(VjpBuilder::shape(&g, &x), Shape::from([2, 5]));
    assert_eq!(VjpBuilder::dtype(&g, &x), DType::F64);
    let y = g.apply(Op::Unary { f: UnaryOp::Exp }, &[&x]).unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(g.inputs_of(y).unwrap(), vec![x]);
    assert_eq!(g.ty(y).unwrap(), &TensorType::new([2, 5], DType::F64));
    assert!(g.apply(add(), &[&x, &NodeId::new(42)]).is_err());
}

// ----- rewriting -------------------------------------------------------------------------------

#[test]
fn replace_all_uses_redirects_users_and_outputs() {
    let (mut g, [x, b, _half, s, m, r]) = small_graph();
    // Swap `x + b` for `b + x`.
    let t = g.add_op(add(), &[b, x]).unwrap();
    g.replace_all_uses(s, t).unwrap();
    assert_eq!(g.inputs_of(m).unwrap()[0], t);
    assert_eq!(g.outputs(), &[r, t]);
    assert_eq!(g.use_count(s).unwrap(), 0);
    g.remove_node(s).unwrap();
    assert!(!g.contains(s));
    assert_eq!(
        g.to_text(),
        "%0 = input \"x\" : f32[2,3]\n%1 = param \"b\" : f32[3]\n%2 = const 0.5 : f32[]\n\
         %3 = add(%1, %0) : f32[2,3]\n%4 = mul(%3, %2) : f32[2,3]\n%5 = relu(%4) : f32[2,3]\n\
         return %5, %3\n"
    );
}

#[test]
fn replacing_x_by_f_of_x_keeps_f_using_x() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t([2])).unwrap();
    let y = g.add_op(Op::Unary { f: UnaryOp::Neg }, &[x]).unwrap();
    g.set_outputs(vec![y]).unwrap();
    let r = g.add_op(relu(), &[x]).unwrap();
    g.replace_all_uses(x, r).unwrap();
    assert_eq!(g.inputs_of(r).unwrap(), vec![x]);
    assert_eq!(g.inputs_of(y).unwrap(), vec![r]);
    let out = g.run(&[("x", tensor(&[-1.0, 2.0], &[2]).view())]).unwrap();
    assert_eq!(out[0].to_f64_vec(), vec![0.0, -2.0]);
}

#[test]
fn rewrites_that_break_invariants_are_refused() {
    let (mut g, [x, b, half, s, m, r]) = small_graph();
    // `r` depends on `m`, which uses `s`: making `m` use `r` would be a cycle.
    let e = g.replace_all_uses(s, r).unwrap_err();
    assert!(e.to_string().contains("depends on it"), "{e}");
    assert_eq!(g.inputs_of(m).unwrap(), vec![s, half], "nothing changed");
    let e = g.replace_all_uses(x, b).unwrap_err();
    assert_eq!(
        e.to_string(),
        "graph: cannot replace node 0 (f32[2,3]) by node 1 (f32[3]): types differ"
    );
    let e = g.remove_node(s).unwrap_err();
    assert_eq!(
        e.to_string(),
        "graph: cannot remove node 3 (add): it still has 2 use(s)"
    );
}

#[test]
fn topo_order_survives_reused_ids() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t([2])).unwrap();
    let dead = g.add_op(relu(), &[x]).unwrap();
    let y = g.add_op(Op::Unary { f: UnaryOp::Neg }, &[x]).unwrap();
    g.remove_node(dead).unwrap();
    // The freed slot is reused by a node that depends on a later one.
    let z = g.add_op(relu(), &[y]).unwrap();
    assert_eq!(z, dead, "petgraph reuses the vacant index");
    g.set_outputs(vec![z]).unwrap();
    assert_eq!(g.topo_order(), vec![x, y, z]);
    assert_eq!(
        g.to_text(),
        "%0 = input \"x\" : f32[2]\n%1 = neg(%0) : f32[2]\n%2 = relu(%1) : f32[2]\nreturn %2\n"
    );
    let out = g.run(&[("x", tensor(&[-1.0, 2.0], &[2]).view())]).unwrap();
    assert_eq!(out[0].to_f64_vec(), vec![1.0, 0.0]);
    let back = Graph::from_json(&g.to_json()).unwrap();
    assert_eq!(back.to_text(), g.to_text());
}

// ----- text and DOT ----------------------------------------------------------------------------

#[test]
fn text_form_lists_nodes_in_order() {
    let (g, _) = small_graph();
    assert_eq!(g.to_text(), SMALL_TEXT);
    assert_eq!(format!("{g}"), SMALL_TEXT);
}

#[test]
fn text_form_of_inputs_consts_and_attributes() {
    let mut g = Graph::new();
    let x = g
        .add_input("say \"hi\"", TensorType::new([3], DType::I32))
        .unwrap();
    g.add_const(Tensor::from_vec(vec![1i64, -2, 3], [3]).unwrap())
        .unwrap();
    g.add_const(Tensor::from_vec(vec![true, false], [2]).unwrap())
        .unwrap();
    g.add_const(Tensor::zeros([3, 3], DType::F32)).unwrap();
    g.add_const(tensor(&[f32::NEG_INFINITY, 1.5], &[1, 2]))
        .unwrap();
    let y = g
        .add_op(
            Op::Scalar {
                f: BinaryOp::Mul,
                scalar: 2.0,
                reverse: false,
            },
            &[x],
        )
        .unwrap();
    g.set_outputs(vec![y, x]).unwrap();
    assert_eq!(
        g.to_text(),
        "%0 = input \"say \\\"hi\\\"\" : i32[3]\n\
         %1 = const [1, -2, 3] : i64[3]\n\
         %2 = const [true, false] : bool[2]\n\
         %3 = const : f32[3,3]\n\
         %4 = const [-inf, 1.5] : f32[1,2]\n\
         %5 = mul_scalar(%0) {scalar=2.0, reverse=false} : i32[3]\n\
         return %5, %0\n"
    );
    assert_eq!(Graph::new().to_text(), "return\n");
}

#[test]
fn dot_form_is_escaped_and_labels_positions() {
    let (g, _) = small_graph();
    let dot = g.to_dot();
    let expected = "\
digraph kiln {
  node [shape=box, fontname=\"monospace\"];
  n0 [label=\"%0 input \\\"x\\\"\\nf32[2,3]\", shape=ellipse];
  n1 [label=\"%1 param \\\"b\\\"\\nf32[3]\", shape=ellipse];
  n2 [label=\"%2 const\\n0.5\\nf32[]\", shape=note];
  n3 [label=\"%3 add\\nf32[2,3]\", shape=box];
  n4 [label=\"%4 mul\\nf32[2,3]\", shape=box];
  n5 [label=\"%5 relu\\nf32[2,3]\", shape=box];
  n0 -> n3 [label=\"0\"];
  n1 -> n3 [label=\"1\"];
  n3 -> n4 [label=\"0\"];
  n2 -> n4 [label=\"1\"];
  n4 -> n5;
  out0 [label=\"output 0\", shape=plaintext];
  n5 -> out0;
  out1 [label=\"output 1\", shape=plaintext];
  n3 -> out1;
}
";
    assert_eq!(dot, expected);
}

#[test]
fn dot_form_shortens_long_attributes() {
    let mut g = Graph::new();
    let x = g.add_input("a\\b", f32t([2, 3, 4])).unwrap();
    let y = g
        .add_op(
            Op::Reshape {
                shape: vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 4],
            },
            &[x],
        )
        .unwrap();
    g.set_outputs(vec![y]).unwrap();
    let dot = g.to_dot();
    assert!(
        dot.contains("n0 [label=\"%0 input \\\"a\\\\\\\\b\\\"\\nf32[2,3,4]\", shape=ellipse];"),
        "{dot}"
    );
    assert!(
        dot.contains("n1 [label=\"%1 reshape\\nshape=[1,1,1,1,1,1,1,1,1,1,1,1…\\nf32[1,1,1,1,1,1,1,1,1,1,1,1,1,1,2,3,4]\""),
        "{dot}"
    );
    let mut g = Graph::new();
    let x = g.add_input("x", f32t([1, 1, 4, 4])).unwrap();
    let y = g
        .add_op(
            Op::Pooling {
                kind: kiln_ir::PoolKind::Avg,
                kernel: vec![2, 2],
                stride: vec![2, 2],
                pad: vec![0, 0],
                global: false,
                count_include_pad: true,
            },
            &[x],
        )
        .unwrap();
    g.set_outputs(vec![y]).unwrap();
    assert!(g.to_dot().contains(
        "n1 [label=\"%1 pooling\\nkind=avg, kernel=[2,2], stride=[2,2],\\npad=[0,0], global=false,\\ncount_include_pad=true\\nf32[1,1,2,2]\", shape=box];"
    ), "{}", g.to_dot());
}

#[test]
fn text_form_keeps_long_attributes_whole() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t([2, 3, 4])).unwrap();
    let y = g
        .add_op(
            Op::Reshape {
                shape: vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 4],
            },
            &[x],
        )
        .unwrap();
    g.set_outputs(vec![y]).unwrap();
    assert!(g
        .to_text()
        .contains("{shape=[1,1,1,1,1,1,1,1,1,1,1,1,1,1,2,3,4]}"));
}

// ----- JSON ------------------------------------------------------------------------------------

#[test]
fn json_round_trips_exactly() {
    let (mut g, [x, ..]) = small_graph();
    let c = g
        .add_const(
            Tensor::from_vec(vec![f64::INFINITY, f64::NEG_INFINITY, 0.1, -0.0], [2, 2]).unwrap(),
        )
        .unwrap();
    let k = g
        .add_const(Tensor::from_vec(vec![255u8, 0], [2]).unwrap())
        .unwrap();
    let outs = [g.outputs().to_vec(), vec![c, k, x]].concat();
    g.set_outputs(outs).unwrap();
    let json = g.to_json();
    let back = Graph::from_json(&json).unwrap();
    assert_eq!(back.to_json(), json);
    assert_eq!(back.to_text(), g.to_text());
    assert_eq!(back.bindings().len(), 2);
    let consts: Vec<&Tensor> = back
        .topo_order()
        .into_iter()
        .filter_map(|id| match &back.node(id).unwrap().kind {
            NodeKind::Const(t) => Some(t),
            _ => None,
        })
        .collect();
    let inf = consts[1].as_slice::<f64>().unwrap();
    assert_eq!(inf[..3], [f64::INFINITY, f64::NEG_INFINITY, 0.1]);
    assert!(inf[3] == 0.0 && inf[3].is_sign_negative());
    assert_eq!(consts[2].as_slice::<u8>().unwrap(), &[255, 0]);

    // Nan survives too (it is not equal to itself, so compare the text).
    let mut n = Graph::new();
    let c = n.add_const(tensor(&[f32::NAN], &[1])).unwrap();
    n.set_outputs(vec![c]).unwrap();
    let back = Graph::from_json(&n.to_json()).unwrap();
    assert_eq!(back.to_text(), "%0 = const [NaN] : f32[1]\nreturn %0\n");
}

#[test]
fn json_layout_is_one_node_per_line() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t([2])).unwrap();
    let y = g.add_op(relu(), &[x]).unwrap();
    g.set_outputs(vec![y]).unwrap();
    assert_eq!(
        g.to_json(),
        r#"{
  "format": "kiln-graph",
  "version": 1,
  "nodes": [
    {"id":0,"kind":"input","name":"x","inputs":[],"type":{"shape":[2],"dtype":"f32"}},
    {"id":1,"kind":"op","op":{"op":"unary","f":"relu"},"inputs":[0],"type":{"shape":[2],"dtype":"f32"}}
  ],
  "outputs": [1]
}
"#
    );
}

/// A hand-written file: nodes out of order, sparse ids.
const HAND_WRITTEN: &str = r#"{"format": "kiln-graph", "version": 1,
 "nodes": [
  {"id": 7, "kind": "op", "op": {"op": "binary", "f": "add"}, "inputs": [3, 5], "type": {"shape": [2], "dtype": "f32"}},
  {"id": 5, "kind": "const", "value": {"dtype": "f32", "shape": [2], "data": [1, "-inf"]}, "type": {"shape": [2], "dtype": "f32"}},
  {"id": 3, "kind": "input", "name": "x", "type": {"shape": [2], "dtype": "f32"}}
 ],
 "outputs": [7]}"#;

#[test]
fn json_accepts_any_node_order() {
    let g = Graph::from_json(HAND_WRITTEN).unwrap();
    assert_eq!(
        g.to_text(),
        "%0 = input \"x\" : f32[2]\n%1 = const [1, -inf] : f32[2]\n%2 = add(%0, %1) : f32[2]\nreturn %2\n"
    );
    let out = g.run(&[("x", tensor(&[2.0, 3.0], &[2]).view())]).unwrap();
    assert_eq!(out[0].to_f64_vec(), vec![3.0, f64::NEG_INFINITY]);
}

fn load_err(text: &str) -> String {
    match Graph::from_json(text) {
        Ok(g) => panic!("loaded a bad file:\n{g}"),
        Err(e) => {
            assert!(matches!(e, Error::Format(_)), "{e:?}");
            e.to_string()
        }
    }
}

#[test]
fn json_checks_format_and_version() {
    assert!(load_err("{").starts_with("graph JSON: "));
    assert_eq!(
        load_err("[1]"),
        "graph JSON: expected an object at the top level"
    );
    assert_eq!(
        load_err(r#"{"format": "onnx", "version": 1, "nodes": [], "outputs": []}"#),
        "graph JSON: format is \"onnx\", expected \"kiln-graph\""
    );
    assert_eq!(
        load_err(r#"{"version": 1, "nodes": [], "outputs": []}"#),
        "graph JSON: missing \"format\": \"kiln-graph\""
    );
    assert_eq!(
        load_err(r#"{"format": "kiln-graph", "version": 2, "nodes": [], "outputs": []}"#),
        format!("graph JSON: version 2 is newer than this kiln reads (version {FORMAT_VERSION})")
    );
    assert_eq!(
        load_err(r#"{"format": "kiln-graph", "version": "1", "nodes": [], "outputs": []}"#),
        "graph JSON: \"version\" must be 1, got \"1\""
    );
    assert_eq!(
        load_err(r#"{"format": "kiln-graph", "version": 1, "nodes": [], "outputs": [], "x": 1}"#),
        "graph JSON: unknown field \"x\""
    );
    assert_eq!(
        Graph::new().to_json(),
        "{\n  \"format\": \"kiln-graph\",\n  \"version\": 1,\n  \"nodes\": [],\n  \"outputs\": []\n}\n"
    );
    let empty =
        Graph::from_json(r#"{"format": "kiln-graph", "version": 1, "nodes": [], "outputs": []}"#)
            .unwrap();
    assert!(empty.is_empty());
}

#[test]
fn json_reports_bad_nodes_by_id() {
    let e = load_err(&HAND_WRITTEN.replace("\"binary\"", "\"frobnicate\""));
    assert!(
        e.starts_with("graph JSON: node 7: unknown variant `frobnicate`"),
        "{e}"
    );
    let e = load_err(&HAND_WRITTEN.replace("\"kind\": \"const\"", "\"kind\": \"constant\""));
    assert!(
        e.starts_with("graph JSON: node 5: unknown variant `constant`"),
        "{e}"
    );
    let e = load_err(&HAND_WRITTEN.replace("\"name\": \"x\"", "\"nmae\": \"x\""));
    assert!(
        e.starts_with("graph JSON: node 3: unknown field `nmae`"),
        "{e}"
    );
    assert_eq!(
        load_err(&HAND_WRITTEN.replace("[3, 5]", "[3, 9]")),
        "graph JSON: node 7: input 1 refers to node 9, which does not exist"
    );
    assert_eq!(
        load_err(&HAND_WRITTEN.replace("\"outputs\": [7]", "\"outputs\": [8]")),
        "graph JSON: output 0 refers to node 8, which does not exist"
    );
    assert_eq!(
        load_err(&HAND_WRITTEN.replace("\"id\": 5", "\"id\": 7")),
        "graph JSON: node 7: duplicate id"
    );
    assert_eq!(
        load_err(&HAND_WRITTEN.replace("\"data\": [1, \"-inf\"]", "\"data\": [1]")),
        "graph JSON: node 5: const of shape [2] needs 2 elements, got 1"
    );
    assert_eq!(
        load_err(&HAND_WRITTEN.replace(
            "\"shape\": [2], \"data\"",
            "\"shape\": [4294967296, 4294967296], \"data\""
        )),
        "graph JSON: node 5: const of shape [4294967296, 4294967296] has too many elements"
    );
    assert_eq!(
        load_err(&HAND_WRITTEN.replace("\"-inf\"", "\"minus infinity\"")),
        "graph JSON: node 5: const element 1 is \"minus infinity\", which is not a f32 value"
    );
    assert_eq!(
        load_err(&HAND_WRITTEN.replace("\"name\": \"x\"", "\"name\": \"x\", \"inputs\": [5]")),
        "graph JSON: node 3: input nodes cannot have \"inputs\""
    );
    assert_eq!(
        load_err(&HAND_WRITTEN.replace("\"name\": \"x\", ", "")),
        "graph JSON: node 3: input nodes need \"name\""
    );
}

#[test]
fn json_rejects_cycles() {
    let cyclic = r#"{"format": "kiln-graph", "version": 1, "nodes": [
      {"id": 0, "kind": "input", "name": "x", "type": {"shape": [2], "dtype": "f32"}},
      {"id": 1, "kind": "op", "op": {"op": "binary", "f": "add"}, "inputs": [0, 2], "type": {"shape": [2], "dtype": "f32"}},
      {"id": 2, "kind": "op", "op": {"op": "unary", "f": "relu"}, "inputs": [1], "type": {"shape": [2], "dtype": "f32"}}
    ], "outputs": [2]}"#;
    assert_eq!(
        load_err(cyclic),
        "graph JSON: the nodes form a cycle (nodes 1, 2 cannot be ordered)"
    );
}

#[test]
fn json_re_infers_every_type() {
    let wrong = HAND_WRITTEN.replace(
        "\"inputs\": [3, 5], \"type\": {\"shape\": [2]",
        "\"inputs\": [3, 5], \"type\": {\"shape\": [3]",
    );
    assert_eq!(
        load_err(&wrong),
        "graph JSON: node 7: stored type f32[3] but its inputs give f32[2]"
    );
    let wrong_const = HAND_WRITTEN.replace(
        "\"data\": [1, \"-inf\"]}, \"type\": {\"shape\": [2], \"dtype\": \"f32\"}",
        "\"data\": [1, \"-inf\"]}, \"type\": {\"shape\": [2], \"dtype\": \"f64\"}",
    );
    assert_eq!(
        load_err(&wrong_const),
        "graph JSON: node 5: stored type f64[2] but its inputs give f32[2]"
    );
    let bad_shapes = HAND_WRITTEN.replace(
        "{\"id\": 3, \"kind\": \"input\", \"name\": \"x\", \"type\": {\"shape\": [2]",
        "{\"id\": 3, \"kind\": \"input\", \"name\": \"x\", \"type\": {\"shape\": [3]",
    );
    assert_eq!(
        load_err(&bad_shapes),
        "graph JSON: node 7: add: cannot broadcast shapes [3] and [2]"
    );
}

// ----- running ---------------------------------------------------------------------------------

#[test]
fn run_computes_outputs_with_the_interpreter() {
    let (g, _) = small_graph();
    let x = tensor(&[1.0, -2.0, 3.0, -4.0, 5.0, -6.0], &[2, 3]);
    let b = tensor(&[1.0, 1.0, -1.0], &[3]);
    let out = g.run(&[("b", b.view()), ("x", x.view())]).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].to_f64_vec(), vec![1.0, 0.0, 1.0, 0.0, 3.0, 0.0]);
    assert_eq!(out[1].to_f64_vec(), vec![2.0, -1.0, 2.0, -3.0, 6.0, -7.0]);
    assert_eq!(out[1].shape(), &Shape::from([2, 3]));
}

#[test]
fn run_returns_inputs_and_consts_as_outputs() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t([2])).unwrap();
    let c = g
        .add_const(Tensor::from_vec(vec![7i32, 8, 9], [3]).unwrap())
        .unwrap();
    g.set_outputs(vec![c, x, x]).unwrap();
    let out = g.run(&[("x", tensor(&[0.5, 1.5], &[2]).view())]).unwrap();
    assert_eq!(out[0], Tensor::from_vec(vec![7i32, 8, 9], [3]).unwrap());
    assert_eq!(out[1].to_f64_vec(), vec![0.5, 1.5]);
    assert_eq!(out[2], out[1]);
}

#[test]
fn run_names_the_bad_input() {
    let (g, _) = small_graph();
    let x = tensor(&[0.0; 6], &[2, 3]);
    let b = tensor(&[0.0; 3], &[3]);
    let err = |inputs: &[(&str, kiln_ir::TensorView<'_>)]| g.run(inputs).unwrap_err().to_string();
    assert_eq!(
        err(&[("x", x.view())]),
        "graph: run: missing input \"b\" (f32[3])"
    );
    assert_eq!(
        err(&[("x", x.view()), ("b", b.view()), ("c", b.view())]),
        "graph: run: unknown input \"c\" (this graph binds: x, b)"
    );
    assert_eq!(
        err(&[("x", x.view()), ("b", x.view())]),
        "graph: run: input \"b\" expects f32[3], got f32[2,3]"
    );
    let b64 = b.cast(DType::F64);
    assert_eq!(
        err(&[("x", x.view()), ("b", b64.view())]),
        "graph: run: input \"b\" expects f32[3], got f64[3]"
    );
    assert_eq!(
        err(&[("x", x.view()), ("b", b.view()), ("x", x.view())]),
        "graph: run: input \"x\" is given twice"
    );
}

#[test]
fn run_with_uses_the_executor_and_skips_dead_nodes() {
    let (mut g, [x, ..]) = small_graph();
    g.add_op(Op::Unary { f: UnaryOp::Exp }, &[x]).unwrap(); // dead: no output uses it
    let mut seen = Vec::new();
    let xv = tensor(&[1.0; 6], &[2, 3]);
    let bv = tensor(&[0.0; 3], &[3]);
    let out = g
        .run_with(&[("x", xv.view()), ("b", bv.view())], &mut |op, xs| {
            seen.push(op.name());
            // A "backend" that answers ones of the right shape.
            Ok(Tensor::full(xs[0].shape.clone(), DType::F32, 1.0))
        })
        .unwrap();
    assert_eq!(seen, vec!["add", "mul", "relu"]);
    assert_eq!(out[0].to_f64_vec(), vec![1.0; 6]);

    let e = g
        .run_with(&[("x", xv.view()), ("b", bv.view())], &mut |_, _| {
            Ok(Tensor::zeros([1], DType::F32))
        })
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "graph: run: %3 (add) should give f32[2,3], the executor returned f32[1]"
    );
    let e = g
        .run_with(&[("x", xv.view()), ("b", bv.view())], &mut |op, _| {
            Err(Error::invalid(op.name(), "no kernel"))
        })
        .unwrap_err();
    assert_eq!(e.to_string(), "add: no kernel");
}

// ----- with the whole op set -------------------------------------------------------------------

#[test]
fn mlp_layer_prints_as_documented() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t([64, 784])).unwrap();
    let w = g.add_param("w", f32t([256, 784])).unwrap();
    let b = g.add_param("b", f32t([256])).unwrap();
    let fc = g
        .add_op(
            Op::FullyConnected {
                flatten: true,
                no_bias: false,
            },
            &[x, w, b],
        )
        .unwrap();
    let r = g.add_op(relu(), &[fc]).unwrap();
    g.set_outputs(vec![r]).unwrap();
    assert_eq!(
        g.to_text(),
        "%0 = input \"x\" : f32[64,784]\n\
         %1 = param \"w\" : f32[256,784]\n\
         %2 = param \"b\" : f32[256]\n\
         %3 = fully_connected(%0, %1, %2) {flatten=true, no_bias=false} : f32[64,256]\n\
         %4 = relu(%3) : f32[64,256]\n\
         return %4\n"
    );
    let e = g
        .add_op(
            Op::FullyConnected {
                flatten: true,
                no_bias: false,
            },
            &[x, b, b],
        )
        .unwrap_err();
    assert!(e.to_string().starts_with("fully_connected: "), "{e}");
}

#[test]
fn vjps_build_a_backward_graph_that_runs() {
    // y = relu(x) * w; dy/dx = (x > 0) * w * dy, dy/dw = relu(x) * dy.
    let mut g = Graph::new();
    let x = g.add_input("x", f32t([3])).unwrap();
    let w = g.add_param("w", f32t([3])).unwrap();
    let dy = g.add_input("dy", f32t([3])).unwrap();
    let r = g.add_op(relu(), &[x]).unwrap();
    let y = g.add_op(mul(), &[r, w]).unwrap();
    let grads = kiln_ir::vjp::vjp(&mut g, &mul(), &[r, w], &y, &dy).unwrap();
    let (dr, dw) = (grads[0].unwrap(), grads[1].unwrap());
    let dx = kiln_ir::vjp::vjp(&mut g, &relu(), &[x], &r, &dr).unwrap()[0].unwrap();
    g.set_outputs(vec![y, dx, dw]).unwrap();
    let out = g
        .run(&[
            ("x", tensor(&[-1.0, 2.0, 3.0], &[3]).view()),
            ("w", tensor(&[10.0, 20.0, 30.0], &[3]).view()),
            ("dy", tensor(&[1.0, 1.0, 0.5], &[3]).view()),
        ])
        .unwrap();
    assert_eq!(out[0].to_f64_vec(), vec![0.0, 40.0, 90.0]);
    assert_eq!(out[1].to_f64_vec(), vec![0.0, 20.0, 15.0]);
    assert_eq!(out[2].to_f64_vec(), vec![0.0, 2.0, 1.5]);
    // The backward graph survives the JSON form too.
    let back = Graph::from_json(&g.to_json()).unwrap();
    assert_eq!(back.to_text(), g.to_text());
}

#[test]
fn json_round_trips_ops_of_every_family() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t([2, 3, 8, 8])).unwrap();
    let w = g.add_param("w", f32t([4, 3, 3, 3])).unwrap();
    let labels = g
        .add_input("labels", TensorType::new([2], DType::I32))
        .unwrap();
    let conv = g
        .add_op(
            Op::Convolution {
                stride: vec![1, 1],
                pad: vec![1, 1],
                dilation: vec![1, 1],
                groups: 1,
                no_bias: true,
            },
            &[x, w],
        )
        .unwrap();
    let pool = g
        .add_op(
            Op::Pooling {
                kind: kiln_ir::PoolKind::Max,
                kernel: vec![2, 2],
                stride: vec![2, 2],
                pad: vec![0, 0],
                global: false,
                count_include_pad: true,
            },
            &[conv],
        )
        .unwrap();
    let sliced = g
        .add_op(
            Op::Slice {
                begin: vec![None, Some(1)],
                end: vec![None, None],
                step: vec![None, Some(1)],
            },
            &[pool],
        )
        .unwrap();
    let flat = g.add_op(Op::Flatten, &[sliced]).unwrap();
    let logits = g
        .add_op(
            Op::Reduce {
                f: kiln_ir::ReduceOp::Mean,
                axes: Some(vec![-1]),
                keepdims: true,
            },
            &[flat],
        )
        .unwrap();
    let wide = g.add_op(Op::Tile { reps: vec![1, 5] }, &[logits]).unwrap();
    let noise = g
        .add_op(
            Op::RandomNormal {
                loc: 0.0,
                scale: 0.1,
                shape: Shape::from([2, 5]),
                dtype: DType::F32,
                seed: 7,
            },
            &[],
        )
        .unwrap();
    let noisy = g.add_op(add(), &[wide, noise]).unwrap();
    let loss = g.add_op(Op::SoftmaxCrossEntropy, &[noisy, labels]).unwrap();
    let total = g
        .add_op(
            Op::Reduce {
                f: kiln_ir::ReduceOp::Sum,
                axes: None,
                keepdims: false,
            },
            &[loss],
        )
        .unwrap();
    let clipped = g
        .add_op(
            Op::Clip {
                min: -1e30,
                max: 1.5e-7,
            },
            &[total],
        )
        .unwrap();
    g.set_outputs(vec![clipped, loss]).unwrap();
    assert_eq!(
        g.ty(clipped).unwrap(),
        &TensorType::new(Shape::scalar(), DType::F32)
    );

    let json = g.to_json();
    let back = Graph::from_json(&json).unwrap();
    assert_eq!(back.to_json(), json);
    assert_eq!(back.to_text(), g.to_text());
    assert!(g.to_text().contains(
        "= convolution(%0, %1) {stride=[1,1], pad=[1,1], dilation=[1,1], groups=1, no_bias=true} : f32[2,4,8,8]"
    ));
    assert!(g
        .to_text()
        .contains("%7 = mean(%6) {axes=[-1], keepdims=true} : f32[2,1]"));

    // The same values come out of both.
    let xv = Tensor::from_vec(
        (0..384).map(|i| (i % 7) as f32 * 0.1).collect(),
        [2, 3, 8, 8],
    )
    .unwrap();
    let wv = Tensor::from_vec(
        (0..108).map(|i| (i % 5) as f32 * 0.01).collect(),
        [4, 3, 3, 3],
    )
    .unwrap();
    let lv = Tensor::from_vec(vec![1i32, 4], [2]).unwrap();
    let feed = [("x", xv.view()), ("w", wv.view()), ("labels", lv.view())];
    assert_eq!(g.run(&feed).unwrap(), back.run(&feed).unwrap());
}

#[test]
fn non_finite_op_attributes_fail_to_load_clearly() {
    let mut g = Graph::new();
    let x = g.add_input("x", f32t([2])).unwrap();
    let y = g
        .add_op(
            Op::Clip {
                min: 0.0,
                max: f64::INFINITY,
            },
            &[x],
        )
        .unwrap();
    g.set_outputs(vec![y]).unwrap();
    let e = load_err(&g.to_json());
    assert!(
        e.starts_with("graph JSON: node 1: invalid type: null, expected f64"),
        "{e}"
    );
    assert!(e.ends_with("(an op attribute that was infinite or NaN: JSON cannot store it)"));
}

#[test]
fn json_files_save_and_load() {
    let (g, _) = small_graph();
    let dir = std::env::temp_dir().join(format!("kiln-graph-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("small.json");
    g.save_json(&path).unwrap();
    assert_eq!(Graph::load_json(&path).unwrap().to_text(), SMALL_TEXT);

    std::fs::write(&path, "{\"format\": \"kiln-graph\", \"version\": 9}").unwrap();
    let e = Graph::load_json(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: graph JSON: version 9 is newer than this kiln reads (version 1)",
            path.display()
        )
    );
    let missing = dir.join("missing.json");
    let e = Graph::load_json(&missing).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert!(e.to_string().starts_with(&missing.display().to_string()));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ----- random graphs ---------------------------------------------------------------------------

#[test]
fn random_graphs_round_trip_and_survive_rewrites() {
    use kiln_ir::graph::testing::{random_feed, random_graph};
    for seed in 0..40 {
        let g = random_graph(seed, 15);
        assert_eq!(
            g.len() - g.bindings().len() - count_consts(&g),
            15,
            "seed {seed}"
        );
        let feed = random_feed(&g, seed);
        let views: Vec<(&str, kiln_ir::TensorView<'_>)> =
            feed.iter().map(|(n, t)| (n.as_str(), t.view())).collect();
        let expected = g.run(&views).unwrap();
        assert!(expected
            .iter()
            .all(|t| t.to_f64_vec().iter().all(|x| x.is_finite())));

        let json = g.to_json();
        let back = Graph::from_json(&json).unwrap();
        assert_eq!(back.to_json(), json, "seed {seed}");
        assert_eq!(back.run(&views).unwrap(), expected, "seed {seed}");

        // Rebuild every op as a fresh node, reroute its uses and delete the original:
        // the values must not change, and no id may dangle.
        let mut r = g.clone();
        for id in r.topo_order() {
            let Some(op) = r.op(id).unwrap().cloned() else {
                continue;
            };
            let inputs = r.inputs_of(id).unwrap();
            let copy = r.add_op(op, &inputs).unwrap();
            r.replace_all_uses(id, copy).unwrap();
            r.remove_node(id).unwrap();
        }
        assert_eq!(r.len(), g.len());
        // Same ops, possibly listed in another order (ids were reused).
        let ops = |g: &Graph| {
            let mut v: Vec<String> = g
                .node_ids()
                .into_iter()
                .filter_map(|id| g.op(id).unwrap().map(|op| op.name().to_string()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(ops(&r), ops(&g), "seed {seed}");
        assert_eq!(r.run(&views).unwrap(), expected, "seed {seed}");
    }
}

fn count_consts(g: &Graph) -> usize {
    g.node_ids()
        .into_iter()
        .filter(|&id| matches!(g.node(id).unwrap().kind, NodeKind::Const(_)))
        .count()
}
