package ml

import "golang.org/x/sys/cpu"

// haveKernel says kernel4x8 can run: it needs AVX2 and FMA (x/sys/cpu also
// checks that the operating system saves the YMM registers).
var haveKernel = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// kernel4x8 adds the product of a packed 4×k panel of A (column by column)
// and a packed k×8 panel of B (row by row) to the 4×8 tile of c whose rows
// are ldc apart.
//
//go:noescape
func kernel4x8(k int, a, b, c *float64, ldc int)

// adamKernel is Adam's update of the first n−n%4 parameters; see
// trainer.adam.
//
//go:noescape
func adamKernel(params, grad, mom, sq *float64, n int, c *[6]float64)
