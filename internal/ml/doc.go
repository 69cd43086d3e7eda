// Package ml holds the models a Silo session trains: generalised linear models
// (package "glm") and feed-forward networks (package "ffnet"), their local
// optimisers (SGD with momentum, Adam), FedProx and DP-SGD training hooks, and
// the evaluation metrics. It is pure math: no I/O, no network, no database,
// and it imports no other Silo package, so the runner, the server and the SDK
// can all use it.
//
// # Parameters
//
// Every model keeps all of its parameters in one flat []float64 so that the
// server can aggregate client updates (FedAvg and friends) without knowing the
// architecture, and ship them as compact binary (see MarshalParams). The
// layout is layer by layer from input to output; each layer stores its weights
// as a row-major in×out matrix followed by its out biases. A GLM is a single
// layer, so a binary or single-output GLM is [β₁ … β_d, β₀] (intercept last)
// and a multinomial GLM is the d×k coefficient matrix followed by k intercepts.
// Network weights live in views over that vector, so Params and SetParams are
// plain copies.
//
// # Losses
//
// Classification minimises the mean cross-entropy (log loss). Regression
// minimises the mean unit deviance of the family: for "gaussian" (and every
// regression ffnet by default) that is the mean squared error, for the
// log-link families "poisson", "gamma" and "tweedie" it is the corresponding
// deviance. Elastic-net penalties act on weights only, never on intercepts or
// biases: L2 as (L2/2)·‖w‖² in the gradient, L1 as a proximal soft-threshold
// after every optimiser step, which is what produces exact zeros.
//
// # Differential privacy
//
// With TrainOptions.DP set, Train runs DP-SGD: Poisson-subsampled batches,
// per-example clipping and Gaussian noise, so a Rényi-DP accountant for the
// subsampled Gaussian mechanism (sample rate PoissonSampleRate, TrainResult.Steps
// steps, noise multiplier DPOptions.NoiseMultiplier) bounds the privacy loss.
// Per-example gradient norms are computed from the batched backward pass
// ("ghost clipping"): for a dense layer the per-example weight gradient is the
// outer product aᵢgᵢᵀ, whose norm is ‖aᵢ‖·‖gᵢ‖, so clipping never materialises
// per-example gradients and the DP path stays on BLAS.
package ml
