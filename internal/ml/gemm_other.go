//go:build !amd64

package ml

// haveKernel is false: without the assembly kernel, products go to gonum.
const haveKernel = false

func kernel4x8(k int, a, b, c *float64, ldc int) { panic("ml: no gemm kernel on this architecture") }

func adamKernel(params, grad, mom, sq *float64, n int, c *[6]float64) {
	panic("ml: no adam kernel on this architecture")
}
