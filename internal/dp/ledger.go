package dp

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// The privacy ledger of a dataset lists the ε each session spent on it.
// Sessions compose by basic composition: their ε add up (SPEC §3). That is
// loose — RDP would compose sessions more tightly — but it is the rule
// custodians read and can check by hand, and it stays valid whatever
// mechanism a future session type uses.

var (
	// ErrSessionLimit is wrapped by a *BudgetError when one session asks for
	// more than the dataset's per-session maximum.
	ErrSessionLimit = errors.New("over the per-session epsilon limit")
	// ErrBudgetExceeded is wrapped by a *BudgetError when a session would take
	// the dataset's ledger past its epsilon budget.
	ErrBudgetExceeded = errors.New("over the epsilon budget")
	// ErrInvalidBudget is returned for a budget, limit or request that is not
	// a positive finite number; checks fail closed on such values.
	ErrInvalidBudget = errors.New("invalid privacy budget")
)

// BudgetError says why a session may not spend ε on a dataset, with the
// numbers a person needs to act on it. The caller adds which dataset.
type BudgetError struct {
	Reason                          error // ErrSessionLimit or ErrBudgetExceeded
	Requested, MaxPerSession, Spent float64
	Budget                          float64
}

func (e *BudgetError) Error() string {
	if e.Reason == ErrSessionLimit {
		return fmt.Sprintf("session asks for ε=%s but the dataset allows at most %s per session",
			num(e.Requested), num(e.MaxPerSession))
	}
	return fmt.Sprintf("would exceed the budget: %s of %s spent, %s requested",
		num(e.Spent), num(e.Budget), num(e.Requested))
}

func (e *BudgetError) Unwrap() error { return e.Reason }

// num formats ε for people: 6 significant digits hide float sums' dust
// (0.1+0.2 prints as 0.3) without hiding anything that matters.
func num(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) }

// budgetSlack absorbs floating-point error in sums of ε, so that spending a
// budget in parts that add up to it exactly on paper (10 × 0.1 of 1) is not
// refused for 1e-16. It is relative to the budget and far below anything a
// person would set.
const budgetSlack = 1e-9

// Spent returns the ledger's total: the sum of the sessions' ε.
func Spent(spent []float64) float64 {
	var s float64
	for _, e := range spent {
		s += e
	}
	return s
}

// Remaining returns how much of budget the ledger entries leave, never less
// than zero (a custodian may lower a budget below what was already spent).
func Remaining(budget float64, spent []float64) float64 {
	return math.Max(budget-Spent(spent), 0)
}

// CheckBudget returns nil if a session may spend `requested` ε on a dataset
// with the given budget and per-session maximum whose ledger already holds
// spent; otherwise a *BudgetError (errors.Is ErrSessionLimit or
// ErrBudgetExceeded), or ErrInvalidBudget for a non-positive or non-finite
// number: a privacy check fails closed.
func CheckBudget(budget, maxPerSession float64, spent []float64, requested float64) error {
	for _, v := range []struct {
		name string
		x    float64
	}{{"epsilon budget", budget}, {"max epsilon per session", maxPerSession}, {"requested epsilon", requested}} {
		if !(v.x > 0) || math.IsInf(v.x, 1) {
			return fmt.Errorf("%w: %s must be a positive finite number, got %g", ErrInvalidBudget, v.name, v.x)
		}
	}
	for i, e := range spent {
		if !(e >= 0) || math.IsInf(e, 1) {
			return fmt.Errorf("%w: ledger entry %d is %g, not a finite ε ≥ 0", ErrInvalidBudget, i, e)
		}
	}
	if requested > maxPerSession*(1+budgetSlack) {
		return &BudgetError{Reason: ErrSessionLimit, Requested: requested, MaxPerSession: maxPerSession, Budget: budget, Spent: Spent(spent)}
	}
	if s := Spent(spent); s+requested > budget*(1+budgetSlack) {
		return &BudgetError{Reason: ErrBudgetExceeded, Requested: requested, MaxPerSession: maxPerSession, Budget: budget, Spent: s}
	}
	return nil
}
