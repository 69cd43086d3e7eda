#include "textflag.h"

// func kernel4x8(k int, a, b, c *float64, ldc int)
TEXT ·kernel4x8(SB), NOSPLIT, $0-40
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $3, R8
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	VXORPD Y2, Y2, Y2
	VXORPD Y3, Y3, Y3
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7
	TESTQ CX, CX
	JZ    store

loop:
	VMOVUPD      (DI), Y8
	VMOVUPD      32(DI), Y9
	VBROADCASTSD (SI), Y10
	VFMADD231PD  Y8, Y10, Y0
	VFMADD231PD  Y9, Y10, Y1
	VBROADCASTSD 8(SI), Y11
	VFMADD231PD  Y8, Y11, Y2
	VFMADD231PD  Y9, Y11, Y3
	VBROADCASTSD 16(SI), Y12
	VFMADD231PD  Y8, Y12, Y4
	VFMADD231PD  Y9, Y12, Y5
	VBROADCASTSD 24(SI), Y13
	VFMADD231PD  Y8, Y13, Y6
	VFMADD231PD  Y9, Y13, Y7
	ADDQ         $32, SI
	ADDQ         $64, DI
	DECQ         CX
	JNZ          loop

store:
	VADDPD  (DX), Y0, Y0
	VMOVUPD Y0, (DX)
	VADDPD  32(DX), Y1, Y1
	VMOVUPD Y1, 32(DX)
	ADDQ    R8, DX
	VADDPD  (DX), Y2, Y2
	VMOVUPD Y2, (DX)
	VADDPD  32(DX), Y3, Y3
	VMOVUPD Y3, 32(DX)
	ADDQ    R8, DX
	VADDPD  (DX), Y4, Y4
	VMOVUPD Y4, (DX)
	VADDPD  32(DX), Y5, Y5
	VMOVUPD Y5, 32(DX)
	ADDQ    R8, DX
	VADDPD  (DX), Y6, Y6
	VMOVUPD Y6, (DX)
	VADDPD  32(DX), Y7, Y7
	VMOVUPD Y7, 32(DX)
	VZEROUPPER
	RET

// func adamKernel(params, grad, mom, sq *float64, n int, c *[6]float64)
// For each of n (a multiple of 4) parameters, with c = b1, 1−b1, b2, 1−b2,
// step, eps: m = b1·m + (1−b1)·g; v = b2·v + (1−b2)·g²;
// p −= step·m / (√v + eps).
TEXT ·adamKernel(SB), NOSPLIT, $0-48
	MOVQ         params+0(FP), DI
	MOVQ         grad+8(FP), SI
	MOVQ         mom+16(FP), R8
	MOVQ         sq+24(FP), R9
	MOVQ         n+32(FP), CX
	MOVQ         c+40(FP), AX
	VBROADCASTSD (AX), Y10
	VBROADCASTSD 8(AX), Y11
	VBROADCASTSD 16(AX), Y12
	VBROADCASTSD 24(AX), Y13
	VBROADCASTSD 32(AX), Y14
	VBROADCASTSD 40(AX), Y15
	SHRQ         $2, CX
	JZ           done

adamloop:
	VMOVUPD      (SI), Y0
	VMOVUPD      (R8), Y1
	VMOVUPD      (R9), Y2
	VMULPD       Y10, Y1, Y1
	VFMADD231PD  Y0, Y11, Y1
	VMULPD       Y0, Y0, Y3
	VMULPD       Y12, Y2, Y2
	VFMADD231PD  Y3, Y13, Y2
	VMOVUPD      Y1, (R8)
	VMOVUPD      Y2, (R9)
	VSQRTPD      Y2, Y4
	VADDPD       Y15, Y4, Y4
	VDIVPD       Y4, Y1, Y5
	VMOVUPD      (DI), Y6
	VFNMADD231PD Y5, Y14, Y6
	VMOVUPD      Y6, (DI)
	ADDQ         $32, SI
	ADDQ         $32, R8
	ADDQ         $32, R9
	ADDQ         $32, DI
	DECQ         CX
	JNZ          adamloop

done:
	VZEROUPPER
	RET
