package ml

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Task is what a model predicts.
type Task string

// Tasks.
const (
	Classification Task = "classification"
	Regression     Task = "regression"
)

// Model packages.
const (
	PackageGLM   = "glm"
	PackageFFNet = "ffnet"
)

// GLM families. Classification uses binomial (2 classes) or multinomial
// (softmax regression); the other families are for regression, with the
// identity link for gaussian and the log link for the rest.
const (
	FamilyGaussian    = "gaussian"
	FamilyBinomial    = "binomial"
	FamilyMultinomial = "multinomial"
	FamilyPoisson     = "poisson"
	FamilyGamma       = "gamma"
	FamilyTweedie     = "tweedie"
)

// Hidden-layer activations of an ffnet.
const (
	ActivationReLU = "relu"
	ActivationTanh = "tanh"
)

// MaxParams bounds the size of a model so that a mistaken configuration is
// rejected by Validate instead of exhausting a runner's memory (2²⁶ float64s
// are 512 MiB).
const MaxParams = 1 << 26

// Spec describes a model completely; together with the parameter vector it is
// everything needed to rebuild a trained model. The JSON names match the
// "model" object of a session configuration.
type Spec struct {
	Package     string `json:"package"`
	Task        Task   `json:"task"`
	NumFeatures int    `json:"num_features"` // after preprocessing (standardised numerics + one-hot)
	// Classes are the class labels in the order of the output columns. A
	// binary model predicts P(Classes[1]): the positive class is the second.
	Classes []string `json:"classes,omitempty"`

	// Family is the GLM family ("" picks binomial/multinomial for
	// classification by the number of classes, gaussian for regression). An
	// ffnet accepts a regression family too; by default it is gaussian (MSE).
	Family       string  `json:"family,omitempty"`
	TweediePower float64 `json:"tweedie_power,omitempty"` // tweedie only, in (1,2)
	// Elastic-net penalty on weights (never intercepts or biases).
	L1 float64 `json:"l1,omitempty"`
	L2 float64 `json:"l2,omitempty"`

	// ffnet only.
	HiddenLayers []int   `json:"hidden_layers,omitempty"`
	Activation   string  `json:"activation,omitempty"` // "relu" (default) or "tanh"
	Dropout      float64 `json:"dropout,omitempty"`    // in [0,1); inverted dropout on hidden layers while training
}

// Validate reports the first problem with s, worded for the person who wrote
// the session configuration.
func (s Spec) Validate() error {
	_, err := s.normalize()
	return err
}

// normalize validates s and fills in defaults (family, activation), returning
// a copy that owns its slices so a Model's spec cannot change under it.
func (s Spec) normalize() (Spec, error) {
	s.Classes = append([]string(nil), s.Classes...)
	s.HiddenLayers = append([]int(nil), s.HiddenLayers...)
	if len(s.Classes) == 0 {
		s.Classes = nil
	}
	if len(s.HiddenLayers) == 0 {
		s.HiddenLayers = nil
	}

	switch s.Package {
	case PackageGLM, PackageFFNet:
	case "":
		return s, errors.New(`ml: model package is required ("glm" or "ffnet")`)
	default:
		return s, fmt.Errorf(`ml: unknown model package %q (want "glm" or "ffnet")`, s.Package)
	}
	if s.NumFeatures < 1 {
		return s, fmt.Errorf("ml: the model needs at least one feature (num_features is %d)", s.NumFeatures)
	}

	switch s.Task {
	case Classification:
		if len(s.Classes) < 2 {
			return s, fmt.Errorf("ml: classification needs at least 2 classes, got %d", len(s.Classes))
		}
		seen := make(map[string]bool, len(s.Classes))
		for _, c := range s.Classes {
			if seen[c] {
				return s, fmt.Errorf("ml: class %q is listed twice", c)
			}
			seen[c] = true
		}
		switch s.Family {
		case "":
			s.Family = FamilyBinomial
			if len(s.Classes) > 2 {
				s.Family = FamilyMultinomial
			}
		case FamilyBinomial:
			if len(s.Classes) != 2 {
				return s, fmt.Errorf("ml: family binomial needs exactly 2 classes, got %d; use multinomial", len(s.Classes))
			}
		case FamilyMultinomial:
		default:
			return s, fmt.Errorf("ml: family %q cannot model classification; use binomial or multinomial", s.Family)
		}
	case Regression:
		if len(s.Classes) > 0 {
			return s, errors.New("ml: classes are only for classification tasks")
		}
		switch s.Family {
		case "":
			s.Family = FamilyGaussian
		case FamilyGaussian, FamilyPoisson, FamilyGamma, FamilyTweedie:
		case FamilyBinomial, FamilyMultinomial:
			return s, fmt.Errorf("ml: family %s is for classification, but the task is regression", s.Family)
		default:
			return s, fmt.Errorf("ml: unknown family %q (want gaussian, binomial, multinomial, poisson, gamma or tweedie)", s.Family)
		}
	case "":
		return s, errors.New(`ml: task is required ("classification" or "regression")`)
	default:
		return s, fmt.Errorf(`ml: unknown task %q (want "classification" or "regression")`, s.Task)
	}

	if s.Family == FamilyTweedie {
		if !(s.TweediePower > 1 && s.TweediePower < 2) {
			return s, fmt.Errorf("ml: tweedie_power must be strictly between 1 and 2, got %g", s.TweediePower)
		}
	} else if s.TweediePower != 0 {
		return s, fmt.Errorf("ml: tweedie_power is only used with family tweedie (family is %s)", s.Family)
	}
	if !(s.L1 >= 0) || math.IsInf(s.L1, 0) {
		return s, fmt.Errorf("ml: l1 must be a finite number ≥ 0, got %g", s.L1)
	}
	if !(s.L2 >= 0) || math.IsInf(s.L2, 0) {
		return s, fmt.Errorf("ml: l2 must be a finite number ≥ 0, got %g", s.L2)
	}

	switch s.Package {
	case PackageGLM:
		var extra []string
		if len(s.HiddenLayers) > 0 {
			extra = append(extra, "hidden_layers")
		}
		if s.Activation != "" {
			extra = append(extra, "activation")
		}
		if s.Dropout != 0 {
			extra = append(extra, "dropout")
		}
		if len(extra) > 0 {
			return s, fmt.Errorf("ml: %s only apply to package ffnet, not glm", strings.Join(extra, ", "))
		}
	case PackageFFNet:
		if len(s.HiddenLayers) == 0 {
			return s, errors.New("ml: ffnet needs at least one hidden layer (use package glm for a linear model)")
		}
		for i, h := range s.HiddenLayers {
			if h < 1 {
				return s, fmt.Errorf("ml: hidden layer %d has %d units; every layer needs at least 1", i+1, h)
			}
		}
		switch s.Activation {
		case "":
			s.Activation = ActivationReLU
		case ActivationReLU, ActivationTanh:
		default:
			return s, fmt.Errorf(`ml: unknown activation %q (want "relu" or "tanh")`, s.Activation)
		}
		if !(s.Dropout >= 0 && s.Dropout < 1) {
			return s, fmt.Errorf("ml: dropout must be in [0, 1), got %g", s.Dropout)
		}
	}

	if _, ok := s.paramCount(); !ok {
		return s, fmt.Errorf("ml: the model would have more than %d parameters; use fewer or smaller hidden layers", MaxParams)
	}
	return s, nil
}

// outputs is the width of the last layer: one logit for binomial, one per
// class for multinomial, one mean for regression.
func (s Spec) outputs() int {
	if s.Family == FamilyMultinomial {
		return len(s.Classes)
	}
	return 1
}

// widths lists the layer widths from the input to the output.
func (s Spec) widths() []int {
	w := make([]int, 0, len(s.HiddenLayers)+2)
	w = append(w, s.NumFeatures)
	w = append(w, s.HiddenLayers...)
	return append(w, s.outputs())
}

// ParamCount is the number of parameters of a model of this spec, or false
// past MaxParams.
func (s Spec) ParamCount() (int, bool) { return s.paramCount() }

// paramCount counts parameters, reporting false past MaxParams (which also
// keeps the arithmetic far from overflow).
func (s Spec) paramCount() (int, bool) {
	w := s.widths()
	n := 0
	for i := 1; i < len(w); i++ {
		in, out := w[i-1], w[i]
		if in > MaxParams || out > MaxParams || in*out > MaxParams {
			return 0, false
		}
		n += in*out + out
		if n > MaxParams {
			return 0, false
		}
	}
	return n, true
}
