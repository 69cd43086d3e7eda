package ml

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// TestDgemmMatchesGonum: the blocked kernel gives gonum's products, to
// rounding, for every transpose, for edges that leave partial tiles and
// blocks, for strided views and for beta 0, 1 and otherwise.
func TestDgemmMatchesGonum(t *testing.T) {
	if !haveKernel {
		t.Skip("no AVX2/FMA: dgemm is gonum's")
	}
	rng := newRand(60)
	mat := func(r, c, stride int) rawMatrix {
		d := make([]float64, r*stride)
		for i := range d {
			d[i] = rng.NormFloat64()
		}
		return rawMatrix{Rows: r, Cols: c, Stride: stride, Data: d}
	}
	shapes := [][3]int{{64, 128, 784}, {784, 128, 64}, {64, 10, 128}, {64, 128, 10}, {3, 5, 700}, {129, 9, 257}, {5, 1030, 17}, {17, 17, 17}, {1, 300, 300}, {131, 1030, 9}}
	for _, sh := range shapes {
		m, n, k := sh[0], sh[1], sh[2]
		for _, ta := range []blas.Transpose{blas.NoTrans, blas.Trans} {
			for _, tb := range []blas.Transpose{blas.NoTrans, blas.Trans} {
				for _, beta := range []float64{0, 1, -0.5} {
					pad := rng.IntN(3)
					var a, b rawMatrix
					if ta == blas.Trans {
						a = mat(k, m, m+pad)
					} else {
						a = mat(m, k, k+pad)
					}
					if tb == blas.Trans {
						b = mat(n, k, k+pad)
					} else {
						b = mat(k, n, n+pad)
					}
					c := mat(m, n, n+pad)
					want := rawMatrix{Rows: m, Cols: n, Stride: c.Stride, Data: append([]float64(nil), c.Data...)}
					blas64.Gemm(ta, tb, 1, a, b, beta, want)
					dgemm(1+rng.IntN(3), ta, tb, a, b, beta, c)
					for i := range m {
						for j := range c.Stride {
							got, w := c.Data[i*c.Stride+j], want.Data[i*c.Stride+j]
							if math.Abs(got-w) > 1e-12*(1+math.Abs(w))*math.Sqrt(float64(k)) {
								t.Fatalf("%v ta=%c tb=%c beta=%g: c[%d][%d] = %.17g, gonum %.17g", sh, ta, tb, beta, i, j, got, w)
							}
						}
					}
				}
			}
		}
	}
}

// TestAdamMatchesTextbook: the folded (and, with AVX2, vectorised) Adam
// update equals the textbook one, m/c1 over √(v/c2)+ε, to rounding.
func TestAdamMatchesTextbook(t *testing.T) {
	rng := newRand(61)
	const n = 103 // a tail the kernel leaves to Go
	s := Spec{Package: PackageGLM, Task: Regression, NumFeatures: n - 1}
	m := mustModel(t, s, 1)
	tr := &trainer{m: m, opt: TrainOptions{Optimizer: adam(0.01, 1, 1)}, grad: make([]float64, n), mom: make([]float64, n), sq: make([]float64, n)}
	for j := range n {
		m.params[j], tr.grad[j], tr.mom[j], tr.sq[j] = rng.NormFloat64(), rng.NormFloat64(), rng.NormFloat64(), math.Abs(rng.NormFloat64())
	}
	tr.steps = 7
	p, mom, sq := append([]float64(nil), m.params...), append([]float64(nil), tr.mom...), append([]float64(nil), tr.sq...)
	c1, c2 := 1-math.Pow(0.9, 7), 1-math.Pow(0.999, 7)
	for j, g := range tr.grad {
		mom[j] = 0.9*mom[j] + 0.1*g
		sq[j] = 0.999*sq[j] + 0.001*g*g
		p[j] -= 0.01 * (mom[j] / c1) / (math.Sqrt(sq[j]/c2) + 1e-8)
	}
	tr.adam(0.01)
	for j := range n {
		if d := math.Abs(m.params[j] - p[j]); d > 1e-14*(1+math.Abs(p[j])) {
			t.Errorf("parameter %d: %.17g, textbook %.17g", j, m.params[j], p[j])
		}
		if math.Abs(tr.mom[j]-mom[j]) > 1e-15 || math.Abs(tr.sq[j]-sq[j]) > 1e-15 {
			t.Errorf("moments %d: %g %g, textbook %g %g", j, tr.mom[j], tr.sq[j], mom[j], sq[j])
		}
	}
}
