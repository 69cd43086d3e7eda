package ml

import (
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// The dense layers' matrix products run on a blocked kernel of our own
// when the CPU has AVX2 and FMA: gonum's Dgemm (SSE2) ran an ffnet epoch
// at about a quarter of the speed a single-threaded torch reaches with the
// same float64 arithmetic's worth of work. The product is the classic
// three-level blocking (Goto, BLIS): panels of op(B) and op(A) are packed
// into contiguous, zero-padded buffers sized for the caches, and a 4×8
// micro-kernel accumulates each tile in registers.
const (
	gemmMR = 4   // rows of a micro-tile
	gemmNR = 8   // columns of a micro-tile
	gemmKC = 256 // depth of a packed panel: 4·256 and 256·8 float64s stay in L1
	gemmMC = 128 // rows of a packed block of A: 256 kB, in L2
	gemmNC = 1024
)

// gemmMinWork is the smallest m·n·k worth packing for; below it gonum's
// unpacked loops win.
const gemmMinWork = 4096

// gemmParWork is the smallest m·n·k split between goroutines: a batch of 64
// through a 784×128 layer (6.4 M multiply-adds) is worth two.
const gemmParWork = 1 << 20

// dgemm computes c = op(a)·op(b) + beta·c, splitting each packed block's
// column panels between up to workers goroutines.
func dgemm(workers int, ta, tb blas.Transpose, a, b rawMatrix, beta float64, c rawMatrix) {
	m, n := c.Rows, c.Cols
	k := a.Cols
	if ta == blas.Trans {
		k = a.Rows
	}
	if !haveKernel || m*n*k < gemmMinWork {
		blas64.Gemm(ta, tb, 1, a, b, beta, c)
		return
	}
	if m*n*k < gemmParWork {
		workers = 1
	}
	workers = max(1, min(workers, (min(n, gemmNC)+gemmNR-1)/gemmNR, len(gemmBuf{}.tiles)))
	scaleC(beta, c)
	g := gemmBuffers.get()
	defer gemmBuffers.put(g)
	for jc := 0; jc < n; jc += gemmNC {
		nc := min(gemmNC, n-jc)
		for pc := 0; pc < k; pc += gemmKC {
			kc := min(gemmKC, k-pc)
			g.b = packB(g.b, tb == blas.Trans, b, pc, kc, jc, nc)
			for ic := 0; ic < m; ic += gemmMC {
				mc := min(gemmMC, m-ic)
				g.a = packA(g.a, ta == blas.Trans, a, ic, mc, pc, kc)
				if workers == 1 {
					macroKernel(g, 0, kc, mc, 0, nc, c, ic, jc)
					continue
				}
				panels := (nc + gemmNR - 1) / gemmNR
				var wg sync.WaitGroup
				for w := range workers {
					lo, hi := w*panels/workers*gemmNR, min((w+1)*panels/workers*gemmNR, nc)
					wg.Go(func() { macroKernel(g, w, kc, mc, lo, hi, c, ic, jc) })
				}
				wg.Wait()
			}
		}
	}
}

// scaleC sets c to beta·c.
func scaleC(beta float64, c rawMatrix) {
	if beta == 1 {
		return
	}
	for i := range c.Rows {
		row := c.Data[i*c.Stride : i*c.Stride+c.Cols]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// macroKernel multiplies the packed mc×kc block of A by columns [lo, hi)
// of the packed kc×nc panel of B into c at (ic, jc), tile by tile, with
// scratch tile w.
func macroKernel(g *gemmBuf, w, kc, mc, lo, nc int, c rawMatrix, ic, jc int) {
	tile := g.tiles[w][:]
	for jr := lo; jr < nc; jr += gemmNR {
		bp := g.b[jr*kc : jr*kc+kc*gemmNR]
		nr := min(gemmNR, nc-jr)
		for ir := 0; ir < mc; ir += gemmMR {
			ap := g.a[ir*kc : ir*kc+kc*gemmMR]
			mr := min(gemmMR, mc-ir)
			off := (ic+ir)*c.Stride + jc + jr
			if mr == gemmMR && nr == gemmNR {
				kernel4x8(kc, &ap[0], &bp[0], &c.Data[off], c.Stride)
				continue
			}
			// An edge tile: into a scratch tile, then the part that exists.
			clear(tile)
			kernel4x8(kc, &ap[0], &bp[0], &tile[0], gemmNR)
			for i := range mr {
				row := c.Data[off+i*c.Stride : off+i*c.Stride+nr]
				for j := range row {
					row[j] += tile[i*gemmNR+j]
				}
			}
		}
	}
}

// packA copies rows [ic, ic+mc) and columns [pc, pc+kc) of op(a) into
// panels of gemmMR rows, each stored column by column, padded with zeros.
func packA(dst []float64, trans bool, a rawMatrix, ic, mc, pc, kc int) []float64 {
	panels := (mc + gemmMR - 1) / gemmMR
	dst = grow(dst, panels*gemmMR*kc)
	for p := range panels {
		panel := dst[p*gemmMR*kc : (p+1)*gemmMR*kc]
		rows := min(gemmMR, mc-p*gemmMR)
		for i := range gemmMR {
			if i >= rows {
				for q := range kc {
					panel[q*gemmMR+i] = 0
				}
				continue
			}
			r := ic + p*gemmMR + i
			if trans { // op(a)[r][q] = a[q][r]
				for q := range kc {
					panel[q*gemmMR+i] = a.Data[(pc+q)*a.Stride+r]
				}
			} else {
				src := a.Data[r*a.Stride+pc : r*a.Stride+pc+kc]
				for q, v := range src {
					panel[q*gemmMR+i] = v
				}
			}
		}
	}
	return dst
}

// packB copies rows [pc, pc+kc) and columns [jc, jc+nc) of op(b) into
// panels of gemmNR columns, each stored row by row, padded with zeros.
func packB(dst []float64, trans bool, b rawMatrix, pc, kc, jc, nc int) []float64 {
	panels := (nc + gemmNR - 1) / gemmNR
	dst = grow(dst, panels*gemmNR*kc)
	for p := range panels {
		panel := dst[p*gemmNR*kc : (p+1)*gemmNR*kc]
		cols := min(gemmNR, nc-p*gemmNR)
		j0 := jc + p*gemmNR
		if trans { // op(b)[q][j] = b[j][q]
			for j := range gemmNR {
				if j >= cols {
					for q := range kc {
						panel[q*gemmNR+j] = 0
					}
					continue
				}
				src := b.Data[(j0+j)*b.Stride+pc : (j0+j)*b.Stride+pc+kc]
				for q, v := range src {
					panel[q*gemmNR+j] = v
				}
			}
			continue
		}
		for q := range kc {
			row := panel[q*gemmNR : (q+1)*gemmNR]
			src := b.Data[(pc+q)*b.Stride+j0 : (pc+q)*b.Stride+j0+cols]
			copy(row, src)
			clear(row[cols:])
		}
	}
	return dst
}

func grow(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}

// gemmBuf holds one product's packing buffers.
type gemmBuf struct {
	a, b  []float64
	tiles [8][gemmMR * gemmNR]float64 // a scratch tile per worker
}

// gemmPool recycles packing buffers: a training step runs several
// products, and allocating their buffers each time would make steps
// allocate.
type gemmPool struct{ ch chan *gemmBuf }

var gemmBuffers = gemmPool{ch: make(chan *gemmBuf, 16)}

func (p gemmPool) get() *gemmBuf {
	select {
	case g := <-p.ch:
		return g
	default:
		return new(gemmBuf)
	}
}

func (p gemmPool) put(g *gemmBuf) {
	select {
	case p.ch <- g:
	default:
	}
}
