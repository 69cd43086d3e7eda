package silo

import (
	"strings"
	"testing"
)

// fieldsOf returns the fields an error names, in order.
func fieldsOf(err error) string {
	var out []string
	for _, f := range ErrorFields(err) {
		out = append(out, f.Field)
	}
	return strings.Join(out, ",")
}

// TestValidationReportsEveryField: a config, privacy controls or dataset
// with several mistakes gets them all back at once, each naming its field,
// so one attempt can fix them all; Message joins them, Field is the first.
func TestValidationReportsEveryField(t *testing.T) {
	_, err := ParseSessionConfig([]byte(`{"name": "bad name!", "datasets": ["a", "a"], "rounds": 0, "round_timeout": "1ms",
		"task": {"type": "ranking", "target": ""}, "model": {"package": "glm", "l1": -1},
		"optimizer": {"learning_rate": 99, "momentum": 2}, "strategy": {"name": "fedprox", "params": {"mu": 0, "zeta": 1}},
		"differential_privacy": {"epsilon": 0, "delta": 0.5}, "validation": {"fraction": 1.5}, "save_best_model": {"mode": "sideways"}}`))
	want := "name,datasets,rounds,round_timeout,task.type,task.target,model.l1,optimizer.learning_rate,optimizer.momentum,strategy.params," +
		"differential_privacy.epsilon,differential_privacy.delta,validation.fraction,save_best_model.mode"
	if got := fieldsOf(err); got != want {
		t.Errorf("session config fields:\n got %s\nwant %s", got, want)
	}
	if e, ok := err.(*Error); !ok || e.Code != EINVALID || e.Field != "name" || !strings.Contains(e.Message, "rounds must be between 1 and 10000") {
		t.Errorf("session config error = %#v", err)
	}

	p := DefaultPrivacyControls()
	p.AllowedSessionTypes = []string{"hfl", "nope"}
	p.Delta, p.MinRecordsPerAggregate, p.EpsilonBudget = 0.5, 0, -1
	if got := fieldsOf(p.Validate()); got != "privacy.allowed_session_types,privacy.epsilon_budget,privacy.delta,privacy.min_records_per_aggregate" {
		t.Errorf("privacy fields = %s", got)
	}

	d := DatasetSpec{Name: "Bad", Privacy: &p}
	if got := fieldsOf(d.Validate()); !strings.HasPrefix(got, "name,runner,uri,privacy.") {
		t.Errorf("dataset fields = %s", got)
	}

	// One problem is still one field, and a valid input none.
	ok := DefaultPrivacyControls()
	if err := ok.Validate(); err != nil {
		t.Errorf("the defaults: %v", err)
	}
	ok.Delta = 1
	if e, _ := ok.Validate().(*Error); e == nil || len(e.Fields) != 1 || e.Message != e.Fields[0].Message {
		t.Errorf("one problem = %#v", e)
	}
}
