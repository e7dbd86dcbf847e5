//! Reductions over any set of axes: how the reduced input is walked, and the driver that
//! calls the compiled row or column kernel over it.
//!
//! The input's axes (after broadcasting every prologue input to it) are collapsed into
//! groups: neighbouring axes merge when both are reduced or both kept and every input (and
//! the output) can step over them with one stride; size-1 axes are dropped. The last group
//! is the kernel's contiguous `inner` loop:
//! - **inner reduced** (e.g. a row sum, or `(0,2,3)` of NCHW, seen as `[N, C, HW]`): a
//!   [`Body::RowFold`] kernel folds each row into one output element with vector
//!   accumulators; its row loop is the last *kept* group (one output per row) or, when no
//!   axis is kept, a reduced group (every row folds into the same element);
//! - **inner kept** (e.g. a column sum `axis=0` of `[N, D]`): a [`Body::ColFold`] kernel
//!   adds whole rows into the output, vector by vector; its row loop is the last reduced
//!   group, and the contiguous axis is cut into chunks that keep the output chunk in L1.
//!
//! Every other group is walked by the driver: kept ones move the output, reduced ones call
//! the kernel again on the same output, which accumulates. The driver visits reduced
//! positions in row-major order, so each output element is folded in a fixed order whatever
//! the thread count (results are deterministic). Work items (kept positions × a split of the
//! row loop or of the columns) run on rayon's pool when the input is large.
//!
//! Argmax/argmin reduce one axis: [`Body::ArgRow`] when it is the contiguous one,
//! [`Body::ArgCol`] otherwise.

use super::codegen::{Body, Comb, Mode};
use super::KernelFn;
use rayon::prelude::*;

/// One collapsed group of axes.
#[derive(Clone, Debug)]
pub(super) struct Group {
    pub size: usize,
    /// Per input, its stride in elements.
    pub strides: Vec<isize>,
    /// The output's stride in elements (0 for a reduced group).
    pub out: isize,
    pub reduced: bool,
}

/// How a reduction's input is walked (see the module documentation).
#[derive(Clone, Debug)]
pub(super) struct RedLayout {
    /// Groups walked by the driver, outermost first.
    pub outer: Vec<Group>,
    /// The kernel's row loop.
    pub rows: Group,
    /// The contiguous loop.
    pub inner: usize,
    /// Whether `inner` is reduced ([`Body::RowFold`]/[`Body::ArgRow`]).
    pub inner_reduced: bool,
    /// Per input, how it moves along `inner`.
    pub modes: Vec<Mode>,
    /// Number of reduced groups, `inner` and `rows` included.
    pub reduced_groups: usize,
}

impl RedLayout {
    /// The layout of reducing the axes flagged in `reduced` of an input of `dims`, whose
    /// prologue reads inputs of `shapes` (broadcast to `dims`; `None`: not read). `None`
    /// when a shape does not broadcast or the strides cannot be expressed.
    pub fn new(dims: &[usize], reduced: &[bool], shapes: &[Option<&[usize]>]) -> Option<Self> {
        let r = dims.len();
        if reduced.len() != r {
            return None;
        }
        let mut full: Vec<Vec<isize>> = Vec::with_capacity(shapes.len() + 1);
        for s in shapes {
            let Some(s) = *s else {
                full.push(vec![0; r]);
                continue;
            };
            if s.len() > r {
                return None;
            }
            let padded: Vec<usize> = std::iter::repeat_n(1, r - s.len())
                .chain(s.iter().copied())
                .collect();
            let mut st = vec![0isize; r];
            let mut acc = 1isize;
            for a in (0..r).rev() {
                if padded[a] != dims[a] && padded[a] != 1 {
                    return None;
                }
                st[a] = if padded[a] == 1 { 0 } else { acc };
                acc = acc.checked_mul(padded[a] as isize)?;
            }
            full.push(st);
        }
        // The output: kept axes row-major, reduced axes stride 0.
        let mut out = vec![0isize; r];
        let mut acc = 1isize;
        for a in (0..r).rev() {
            if !reduced[a] {
                out[a] = acc;
                acc = acc.checked_mul(dims[a] as isize)?;
            }
        }
        full.push(out);
        let n = shapes.len();
        let mut groups: Vec<(usize, bool, Vec<isize>)> = Vec::new();
        for a in 0..r {
            if dims[a] == 1 {
                continue;
            }
            let merge = groups.last().is_some_and(|(_, red, st)| {
                *red == reduced[a]
                    && full
                        .iter()
                        .zip(st)
                        .all(|(f, &prev)| prev == f[a] * dims[a] as isize)
            });
            if merge {
                let g = groups.last_mut()?;
                g.0 *= dims[a];
                for (k, f) in full.iter().enumerate() {
                    g.2[k] = f[a];
                }
            } else {
                groups.push((dims[a], reduced[a], full.iter().map(|f| f[a]).collect()));
            }
        }
        let to_group = |(size, reduced, st): (usize, bool, Vec<isize>)| Group {
            size,
            out: if reduced { 0 } else { st[n] },
            strides: st[..n].to_vec(),
            reduced,
        };
        let unit = |reduced: bool| Group {
            size: 1,
            strides: vec![0; n],
            out: 0,
            reduced,
        };
        let reduced_groups = groups.iter().filter(|g| g.1).count();
        let inner = groups.pop().map(to_group).unwrap_or_else(|| unit(false));
        let mut modes = Vec::with_capacity(n);
        for &s in &inner.strides {
            modes.push(match s {
                1 => Mode::Contig,
                0 => Mode::Splat,
                _ => return None,
            });
        }
        if !inner.reduced && inner.size > 1 && inner.out != 1 {
            return None;
        }
        // The row loop: the last kept group for an inner reduction (else a reduced one), the
        // last reduced group for an inner kept axis.
        let want_reduced = !inner.reduced;
        let fallback = if inner.reduced {
            groups.len().checked_sub(1)
        } else {
            None
        };
        let pos = groups
            .iter()
            .rposition(|g| g.1 == want_reduced)
            .or(fallback);
        let rows = match pos {
            Some(p) => to_group(groups.remove(p)),
            None => unit(true),
        };
        Some(RedLayout {
            outer: groups.into_iter().map(to_group).collect(),
            inner_reduced: inner.reduced,
            inner: inner.size,
            rows,
            modes,
            reduced_groups,
        })
    }

    /// The kernel body for this layout.
    pub fn body(&self, kind: FoldKind, prog: super::program::Program) -> Body {
        match (kind, self.inner_reduced) {
            (FoldKind::Comb(comb), true) => Body::RowFold { comb, prog },
            (FoldKind::Comb(comb), false) => Body::ColFold { comb, prog },
            (FoldKind::Arg { max }, true) => Body::ArgRow { max, prog },
            (FoldKind::Arg { max }, false) => Body::ArgCol { max, prog },
        }
    }
}

/// What a reduction kernel folds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum FoldKind {
    Comb(Comb),
    Arg { max: bool },
}

/// Columns per chunk of a [`Body::ColFold`]/[`Body::ArgCol`] call: 8 KiB of output stays in
/// L1 while the rows stream through.
const COL_CHUNK: usize = 2048;

/// One call site of the kernel: offsets into the inputs and the output, and the extent of
/// the row loop and the columns.
#[derive(Clone, Copy)]
struct Work {
    /// Linear index over the kept outer groups.
    kept: usize,
    /// `[start, end)` of the rows (inner reduced) or of the columns (inner kept).
    start: usize,
    end: usize,
}

/// Runs `f` over the whole reduction: `out` (and `aux`, when given) hold one element per
/// output position, already set to the fold's identity. `parallel` says whether to spread
/// the work over rayon's pool.
///
/// # Safety
/// `ptrs` must point to inputs whose shapes built `layout`, and `out`/`aux` to buffers of
/// the reduction's output size.
pub(super) unsafe fn drive(
    f: KernelFn,
    layout: &RedLayout,
    ptrs: &[*const f32],
    out: *mut f32,
    aux: *mut f32,
    parallel: bool,
) {
    if layout.inner == 0 || layout.rows.size == 0 || layout.outer.iter().any(|g| g.size == 0) {
        return;
    }
    let kept: Vec<&Group> = layout.outer.iter().filter(|g| !g.reduced).collect();
    let red: Vec<&Group> = layout.outer.iter().filter(|g| g.reduced).collect();
    let n_kept: usize = kept.iter().map(|g| g.size).product();
    let n_red: usize = red.iter().map(|g| g.size).product();
    // The dimension split between work items: kept rows, or columns.
    let (extent, splittable) = if layout.inner_reduced {
        (layout.rows.size, !layout.rows.reduced)
    } else {
        (layout.inner, true)
    };
    let threads = if parallel { crate::cpu::threads() } else { 1 };
    let per_kept = if !splittable {
        1
    } else if layout.inner_reduced {
        (threads * 4).div_ceil(n_kept).clamp(1, extent)
    } else {
        let by_cache = extent.div_ceil(COL_CHUNK);
        let by_threads = (threads * 4).div_ceil(n_kept).min(extent.div_ceil(64));
        by_cache.max(by_threads).max(1)
    };
    let step = if layout.inner_reduced {
        extent.div_ceil(per_kept)
    } else {
        // Column chunks stay whole vectors.
        extent.div_ceil(per_kept).next_multiple_of(4)
    };
    let mut work = Vec::new();
    for k in 0..n_kept {
        let mut s = 0;
        while s < extent {
            let e = (s + step).min(extent);
            work.push(Work {
                kept: k,
                start: s,
                end: e,
            });
            s = e;
        }
    }
    let bases: Vec<usize> = ptrs.iter().map(|&p| p as usize).collect();
    let (out_addr, aux_addr) = (out as usize, aux as usize);
    let row_bytes: Vec<isize> = layout.rows.strides.iter().map(|s| s * 4).collect();
    let out_row = layout.rows.out * 4;
    let run = |w: &Work| {
        let mut in_off = vec![0isize; bases.len()];
        let mut o_off = 0isize;
        // Kept outer position.
        let mut h = w.kept;
        for g in kept.iter().rev() {
            let i = (h % g.size) as isize;
            h /= g.size;
            for (o, s) in in_off.iter_mut().zip(&g.strides) {
                *o += i * s;
            }
            o_off += i * g.out;
        }
        // The split.
        let (rows, cols) = if layout.inner_reduced {
            let i = w.start as isize;
            for (o, s) in in_off.iter_mut().zip(&layout.rows.strides) {
                *o += i * s;
            }
            o_off += i * layout.rows.out;
            (w.end - w.start, layout.inner)
        } else {
            let i = w.start as isize;
            for (o, m) in in_off.iter_mut().zip(&layout.modes) {
                if *m == Mode::Contig {
                    *o += i;
                }
            }
            o_off += i;
            (layout.rows.size, w.end - w.start)
        };
        let mut ptrs: Vec<*const f32> = vec![std::ptr::null(); bases.len()];
        for r in 0..n_red {
            let mut off = in_off.clone();
            let mut h = r;
            for g in red.iter().rev() {
                let i = (h % g.size) as isize;
                h /= g.size;
                for (o, s) in off.iter_mut().zip(&g.strides) {
                    *o += i * s;
                }
            }
            for (p, (&b, &o)) in ptrs.iter_mut().zip(bases.iter().zip(&off)) {
                *p = (b as *const f32).wrapping_offset(o);
            }
            let op = (out_addr as *mut f32).wrapping_offset(o_off);
            let ap = if aux_addr == 0 {
                std::ptr::null_mut()
            } else {
                (aux_addr as *mut f32).wrapping_offset(o_off)
            };
            // SAFETY: the caller's contract: every pointer is an input position of the
            // layout, which moves only within each input along the layout's strides; the
            // output rows/columns of this work item are disjoint from every other item's.
            unsafe {
                f(
                    rows,
                    cols,
                    ptrs.as_ptr(),
                    row_bytes.as_ptr(),
                    op,
                    out_row,
                    ap,
                )
            };
        }
    };
    if parallel && threads > 1 && work.len() > 1 {
        work.par_iter().for_each(run);
    } else {
        work.iter().for_each(run);
    }
}
