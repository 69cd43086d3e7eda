package ml

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// maxChunkRows bounds how many rows go through the network at once, which
// bounds the workspace memory for full-batch training and prediction. Larger
// batches are processed in chunks whose gradients are summed.
const maxChunkRows = 2048

// rawMatrix is a row-major matrix view that BLAS works on directly; it is a
// value, so slicing rows out of it does not allocate.
type rawMatrix = blas64.General

// general views the first r×c values of data as a dense row-major matrix.
func general(data []float64, r, c int) rawMatrix {
	return rawMatrix{Rows: r, Cols: c, Stride: c, Data: data[:r*c]}
}

// rowsOf views rows [lo, lo+n) of x.
func rowsOf(x rawMatrix, lo, n int) rawMatrix {
	return rawMatrix{Rows: n, Cols: x.Cols, Stride: x.Stride, Data: x.Data[lo*x.Stride : (lo+n-1)*x.Stride+x.Cols]}
}

// workspace holds the per-chunk activations and gradients so that training
// steps allocate nothing.
type workspace struct {
	rows int         // capacity in rows
	h    [][]float64 // per layer: linear predictor (output layer) or activation (hidden layers)
	a    [][]float64 // hidden layers: activation after dropout (nil without dropout)
	mask [][]float64 // hidden layers: inverted-dropout multipliers, 0 or 1/(1-p)
	g    [][]float64 // per layer: d loss / d pre-activation
	x    []float64   // gathered input rows
	y    []float64   // gathered targets
	norm []float64   // per-example squared gradient norms (DP)
	drop bool        // whether the last forward pass applied dropout
	// workers is how many goroutines may share a large matrix product.
	workers int
}

// newWorkspace allocates buffers for chunks of up to rows rows; train adds
// what backpropagation and dropout need.
func (m *Model) newWorkspace(rows int, train bool) *workspace {
	ws := &workspace{rows: max(rows, 1), workers: 1}
	for i, ly := range m.layers {
		ws.h = append(ws.h, make([]float64, ws.rows*ly.out))
		if !train {
			continue
		}
		ws.g = append(ws.g, make([]float64, ws.rows*ly.out))
		if m.spec.Dropout > 0 && i < len(m.layers)-1 {
			ws.a = append(ws.a, make([]float64, ws.rows*ly.out))
			ws.mask = append(ws.mask, make([]float64, ws.rows*ly.out))
		}
	}
	if train {
		ws.x = make([]float64, ws.rows*m.spec.NumFeatures)
		ws.y = make([]float64, ws.rows)
		ws.norm = make([]float64, ws.rows)
	}
	return ws
}

// weights views layer l's weight matrix.
func (m *Model) weights(params []float64, l int) rawMatrix {
	ly := m.layers[l]
	return general(params[ly.w:ly.b], ly.in, ly.out)
}

// input is what layer l consumed in the last forward pass.
func (m *Model) input(ws *workspace, x rawMatrix, l int) rawMatrix {
	if l == 0 {
		return x
	}
	out := m.layers[l-1].out
	if ws.drop {
		return general(ws.a[l-1], x.Rows, out)
	}
	return general(ws.h[l-1], x.Rows, out)
}

// forward runs the rows of x through the network and returns the output
// layer's linear predictor η (rows×outputs). A non-nil rng switches on
// training-mode dropout.
func (m *Model) forward(ws *workspace, x rawMatrix, rng *rand.Rand) rawMatrix {
	b := x.Rows
	ws.drop = rng != nil && m.spec.Dropout > 0
	in := x
	last := len(m.layers) - 1
	for l, ly := range m.layers {
		z := general(ws.h[l], b, ly.out)
		bias := m.params[ly.b : ly.b+ly.out]
		for i := 0; i < b; i++ {
			copy(z.Data[i*ly.out:(i+1)*ly.out], bias)
		}
		mulAdd(ws.workers, blas.NoTrans, blas.NoTrans, in, m.weights(m.params, l), z)
		if l == last {
			return z
		}
		m.activate(z.Data)
		if !ws.drop {
			in = z
			continue
		}
		keep := 1 - m.spec.Dropout
		scale := 1 / keep
		mask, a := ws.mask[l][:b*ly.out], ws.a[l][:b*ly.out]
		for i, h := range z.Data {
			if rng.Float64() < keep {
				mask[i] = scale
				a[i] = h * scale
			} else {
				mask[i], a[i] = 0, 0
			}
		}
		in = general(a, b, ly.out)
	}
	panic("unreachable")
}

// activate applies the hidden activation in place.
func (m *Model) activate(v []float64) {
	if m.spec.Activation == ActivationTanh {
		for i, x := range v {
			v[i] = math.Tanh(x)
		}
		return
	}
	for i, x := range v {
		if x < 0 {
			v[i] = 0
		}
	}
}

// backprop turns the output gradient in ws.g[last] into every hidden layer's
// gradient with respect to its pre-activation. Weight gradients are left to
// accumulate so that DP can rescale the rows first.
func (m *Model) backprop(ws *workspace, b int) {
	tanh := m.spec.Activation == ActivationTanh
	for l := len(m.layers) - 1; l > 0; l-- {
		prev := m.layers[l-1].out
		gp := general(ws.g[l-1], b, prev)
		gemm(ws.workers, blas.NoTrans, blas.Trans, general(ws.g[l], b, m.layers[l].out), m.weights(m.params, l), 0, gp)
		h := ws.h[l-1][:b*prev]
		if ws.drop {
			mask := ws.mask[l-1][:b*prev]
			for i := range gp.Data {
				gp.Data[i] *= mask[i]
			}
		}
		if tanh {
			for i, v := range h {
				gp.Data[i] *= 1 - v*v
			}
		} else {
			for i, v := range h {
				if v <= 0 {
					gp.Data[i] = 0
				}
			}
		}
	}
}

// accumulate adds the chunk's weight and bias gradients to grad.
func (m *Model) accumulate(ws *workspace, x rawMatrix, grad []float64) {
	b := x.Rows
	for l, ly := range m.layers {
		g := general(ws.g[l], b, ly.out)
		mulAdd(ws.workers, blas.Trans, blas.NoTrans, m.input(ws, x, l), g, m.weights(grad, l))
		db := grad[ly.b : ly.b+ly.out]
		for i := 0; i < b; i++ {
			row := g.Data[i*ly.out : (i+1)*ly.out]
			for j, v := range row {
				db[j] += v
			}
		}
	}
}

// clipExamples scales each example's gradient (its row in every ws.g) so that
// its full per-example parameter gradient has norm at most clip. A dense
// layer's per-example weight gradient is aᵢgᵢᵀ with norm ‖aᵢ‖‖gᵢ‖ and its bias
// gradient is gᵢ, so the norms come from the batched pass; backpropagation is
// linear in the output gradient, so scaling rows afterwards clips exactly.
func (m *Model) clipExamples(ws *workspace, x rawMatrix, clip float64) {
	b := x.Rows
	norm := ws.norm[:b]
	clear(norm)
	for l, ly := range m.layers {
		in := m.input(ws, x, l)
		g := ws.g[l]
		for i := 0; i < b; i++ {
			ai := in.Data[i*in.Stride : i*in.Stride+in.Cols]
			gi := g[i*ly.out : (i+1)*ly.out]
			norm[i] += (dot(ai, ai) + 1) * dot(gi, gi)
		}
	}
	for i, sq := range norm {
		n := math.Sqrt(sq)
		if n <= clip {
			continue
		}
		c := clip / n
		for l, ly := range m.layers {
			gi := ws.g[l][i*ly.out : (i+1)*ly.out]
			for j := range gi {
				gi[j] *= c
			}
		}
	}
}

func dot(a, b []float64) float64 {
	s := 0.0
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

// mulAdd computes c += op(a)·op(b).
func mulAdd(workers int, ta, tb blas.Transpose, a, b, c rawMatrix) { gemm(workers, ta, tb, a, b, 1, c) }

// gemm computes c = op(a)·op(b) + beta·c, using the matrix-vector kernel when
// c is a single column (GLMs), where it is markedly faster than Dgemm.
func gemm(workers int, ta, tb blas.Transpose, a, b rawMatrix, beta float64, c rawMatrix) {
	if c.Cols == 1 && tb == blas.NoTrans {
		blas64.Gemv(ta, 1, a, blas64.Vector{N: b.Rows, Inc: b.Stride, Data: b.Data}, beta,
			blas64.Vector{N: c.Rows, Inc: c.Stride, Data: c.Data})
		return
	}
	dgemm(workers, ta, tb, a, b, beta, c)
}
