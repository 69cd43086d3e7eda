package dp

import (
	"errors"
	"math"
	"testing"
)

func TestRemaining(t *testing.T) {
	for _, c := range []struct {
		budget float64
		spent  []float64
		want   float64
	}{
		{50, nil, 50},
		{50, []float64{4, 10, 0.5}, 35.5},
		{10, []float64{6, 6}, 0}, // budget lowered below what was spent
	} {
		if got := Remaining(c.budget, c.spent); got != c.want {
			t.Errorf("Remaining(%g, %v) = %g, want %g", c.budget, c.spent, got, c.want)
		}
	}
}

func TestCheckBudget(t *testing.T) {
	spent := []float64{40, 8.5} // 48.5 of 50

	if err := CheckBudget(50, 10, spent, 1.5); err != nil {
		t.Errorf("spending exactly the rest: %v", err)
	}
	// Ten sessions of 0.1 use a budget of 1 exactly, float dust notwithstanding.
	tenths := []float64{0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}
	if err := CheckBudget(1, 1, tenths, 0.1); err != nil {
		t.Errorf("tenth tenth of a budget of 1: %v", err)
	}

	err := CheckBudget(50, 3, spent, 4)
	if !errors.Is(err, ErrSessionLimit) {
		t.Fatalf("over the per-session limit: err = %v", err)
	}
	if want := "session asks for ε=4 but the dataset allows at most 3 per session"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}

	err = CheckBudget(50, 10, spent, 4)
	if !errors.Is(err, ErrBudgetExceeded) {
		t.Fatalf("over the budget: err = %v", err)
	}
	if want := "would exceed the budget: 48.5 of 50 spent, 4 requested"; err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	var be *BudgetError
	if !errors.As(err, &be) || be.Spent != 48.5 || be.Requested != 4 || be.Budget != 50 {
		t.Errorf("BudgetError = %+v", be)
	}

	// Privacy checks fail closed on nonsense.
	for _, c := range []struct {
		name                   string
		budget, max, requested float64
		spent                  []float64
	}{
		{"zero budget", 0, 1, 1, nil},
		{"NaN budget", math.NaN(), 1, 1, nil},
		{"infinite limit", 50, math.Inf(1), 1, nil},
		{"zero request", 50, 10, 0, nil},
		{"NaN request", 50, 10, math.NaN(), nil},
		{"negative ledger entry", 50, 10, 1, []float64{-5}},
		{"NaN ledger entry", 50, 10, 1, []float64{math.NaN()}},
	} {
		if err := CheckBudget(c.budget, c.max, c.spent, c.requested); !errors.Is(err, ErrInvalidBudget) {
			t.Errorf("%s: err = %v, want ErrInvalidBudget", c.name, err)
		}
	}
}
