package silo

import (
	"encoding/json"
	"strings"
	"testing"
)

const specExample = `{
  "name": "readmission-glm",
  "type": "hfl",
  "datasets": ["hospital_a", "hospital_b", "hospital_c"],
  "min_clients": 2,
  "rounds": 10,
  "round_timeout": "5m",
  "task": {"type": "classification", "target": "readmitted", "features": [], "categorical": []},
  "model": {"package": "glm", "family": "binomial", "l1": 0.0, "l2": 0.001},
  "optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "batch_size": 64, "local_epochs": 1},
  "strategy": {"name": "fedavg", "params": {}},
  "differential_privacy": {"epsilon": 4.0, "delta": 1e-5, "max_grad_norm": 1.0},
  "validation": {"fraction": 0.2},
  "save_best_model": {"metric": "loss", "mode": "min"},
  "seed": 23
}`

func TestSessionConfigSpecExample(t *testing.T) {
	c, err := ParseSessionConfig([]byte(specExample))
	if err != nil {
		t.Fatalf("SPEC §4's example is refused: %v", err)
	}
	if c.MinClients != 2 || c.DifferentialPrivacy.Epsilon != 4 || c.Seed != 23 {
		t.Fatalf("parsed = %+v", c)
	}
}

func TestSessionConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		edit  func(m map[string]any)
		field string
		msg   string
	}{
		{func(m map[string]any) { m["colour"] = 1 }, "", `unknown field "colour"`},
		{func(m map[string]any) { m["type"] = "vfl" }, "type", "not built yet"},
		{func(m map[string]any) { m["datasets"] = []string{} }, "datasets", "list the datasets"},
		{func(m map[string]any) { m["datasets"] = []string{"a", "a"} }, "datasets", "listed twice"},
		{func(m map[string]any) { m["min_clients"] = 4 }, "min_clients", "between 1 and the number of datasets (3)"},
		{func(m map[string]any) { m["rounds"] = 0 }, "rounds", "between 1"},
		{func(m map[string]any) { m["round_timeout"] = "soon" }, "round_timeout", "duration"},
		{func(m map[string]any) { m["task"].(map[string]any)["type"] = "ranking" }, "task.type", "classification or regression"},
		{func(m map[string]any) { m["task"].(map[string]any)["target"] = "" }, "task.target", "required"},
		{func(m map[string]any) { m["task"].(map[string]any)["features"] = []string{"readmitted"} }, "task.features", "cannot also be a feature"},
		{func(m map[string]any) { m["model"].(map[string]any)["package"] = "xgboost" }, "model.package", "glm or ffnet"},
		{func(m map[string]any) { m["model"].(map[string]any)["family"] = "poisson" }, "model.family", "binomial"},
		{func(m map[string]any) { m["model"].(map[string]any)["hidden_layers"] = []int{8} }, "model.hidden_layers", "belong to package ffnet"},
		{func(m map[string]any) { m["optimizer"].(map[string]any)["name"] = "newton" }, "optimizer.name", "sgd, adam or lbfgs"},
		{func(m map[string]any) {
			m["optimizer"] = map[string]any{"name": "lbfgs"}
		}, "optimizer.name", "differential privacy trains with DP-SGD, which needs optimizer sgd or adam"},
		{func(m map[string]any) {
			delete(m, "differential_privacy")
			m["optimizer"] = map[string]any{"name": "lbfgs"}
			m["model"].(map[string]any)["l1"] = 0.01
		}, "model.l1", "lbfgs cannot apply an l1 penalty"},
		{func(m map[string]any) {
			delete(m, "differential_privacy")
			m["optimizer"] = map[string]any{"name": "lbfgs"}
			m["model"] = map[string]any{"package": "ffnet"}
		}, "optimizer.name", "lbfgs is for package glm"},
		{func(m map[string]any) {
			m["optimizer"] = map[string]any{"name": "lbfgs", "batch_size": 64}
		}, "optimizer.batch_size", "leave batch_size out"},
		{func(m map[string]any) {
			m["optimizer"] = map[string]any{"name": "lbfgs", "momentum": 0.9}
		}, "optimizer.momentum", "leave momentum out"},
		{func(m map[string]any) { m["optimizer"].(map[string]any)["momentum"] = 1.5 }, "optimizer.momentum", "below 1"},
		{func(m map[string]any) { m["strategy"] = map[string]any{"name": "fedprox", "params": map[string]any{}} }, "strategy.params", "mu > 0"},
		{func(m map[string]any) {
			m["strategy"] = map[string]any{"name": "fedavg", "params": map[string]any{"beta1": 0.9}}
		}, "strategy.params", "takes no parameter"},
		{func(m map[string]any) { m["differential_privacy"].(map[string]any)["epsilon"] = 0 }, "differential_privacy.epsilon", "positive"},
		{func(m map[string]any) { m["differential_privacy"].(map[string]any)["delta"] = 0.5 }, "differential_privacy.delta", "below 0.01"},
		{func(m map[string]any) { m["validation"] = map[string]any{"fraction": 1.0} }, "validation.fraction", "between 0 and 1"},
		{func(m map[string]any) { m["save_best_model"] = map[string]any{"metric": "r2"} }, "save_best_model.metric", "not reported for classification"},
	} {
		var m map[string]any
		json.Unmarshal([]byte(specExample), &m)
		tc.edit(m)
		b, _ := json.Marshal(m)
		_, err := ParseSessionConfig(b)
		e, ok := err.(*Error)
		if !ok || e.Field != tc.field || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s: got %v (field %q), want field %q containing %q", b, err, fieldOf(err), tc.field, tc.msg)
		}
	}
}

func TestSessionConfigDefaults(t *testing.T) {
	c, err := ParseSessionConfig([]byte(`{"name":"x","datasets":["a","b"],"rounds":3,"task":{"type":"regression","target":"y"},"model":{"package":"ffnet"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Type != "hfl" || c.MinClients != 2 || c.RoundTimeout != "5m" || c.Optimizer.Name != "sgd" || c.Optimizer.BatchSize != 64 ||
		c.Strategy.Name != "fedavg" || c.Validation.Fraction != 0.2 || c.SaveBestModel.Metric != "loss" || c.SaveBestModel.Mode != "min" ||
		c.Model.Activation != "relu" || len(c.Model.HiddenLayers) != 1 {
		t.Fatalf("defaults = %+v", c)
	}
	c, err = ParseSessionConfig([]byte(`{"name":"x","datasets":["a"],"rounds":3,"task":{"type":"classification","target":"y"},"model":{"package":"glm","l2":0.001},"optimizer":{"name":"lbfgs"},"strategy":{"name":"fedprox","params":{"mu":0.1}}}`))
	if err != nil {
		t.Fatalf("lbfgs with fedprox and l2: %v", err)
	}
	if o := c.Optimizer; o.LearningRate != 1 || o.LocalEpochs != 100 || o.BatchSize != 0 || o.Momentum != 0 {
		t.Fatalf("lbfgs defaults = %+v", o)
	}
	var cm ClientMetrics
	if err := json.Unmarshal([]byte(`{"round":2,"dataset":"a","n_train":80,"test_loss":0.5}`), &cm); err != nil || cm.Round != 2 || cm.Values["n_train"] != 80 {
		t.Fatalf("ClientMetrics = %+v, %v", cm, err)
	}
	b, _ := json.Marshal(cm)
	if !strings.Contains(string(b), `"test_loss":0.5`) || !strings.Contains(string(b), `"dataset":"a"`) {
		t.Fatalf("ClientMetrics JSON = %s", b)
	}
}

func TestSessionConfigPRL(t *testing.T) {
	c, err := ParseSessionConfig([]byte(`{"name": "link-bank-telco", "type": "prl", "datasets": ["bank_customers", "telco_customers"],
  "id_columns": {"bank_customers": ["email"], "telco_customers": ["email_address"]}, "normalize": ["lowercase", "trim"]}`))
	if err != nil {
		t.Fatalf("the documented example is refused: %v", err)
	}
	if c.MinClients != 2 || c.RoundTimeout != DefaultPRLRoundTimeout || strings.Join(c.Normalize, ",") != "trim,lowercase" || len(c.LinkageKeys()) != 1 {
		t.Fatalf("parsed = %+v", c)
	}
	b, _ := json.Marshal(c)
	if again, err := ParseSessionConfig(b); err != nil || len(again.LinkageKeys()) != 1 {
		t.Fatalf("a prl config does not round-trip: %v\n%s", err, b)
	}
	base := `"name": "x", "type": "prl", "datasets": ["a", "b"]`
	for _, tc := range []struct{ body, field, msg string }{
		{`"id_columns": {"a": ["e"], "b": ["e"]}, "rounds": 3`, "rounds", "belongs to hfl (training) sessions, not prl"},
		{`"id_columns": {"a": ["e"], "b": ["e"]}, "task": {"type": "regression"}`, "task", "belongs to hfl"},
		{`"id_columns": {"a": ["e"], "b": ["e"]}, "seed": 1`, "seed", "belongs to hfl"},
		{`"id_columns": {"a": ["e"]}`, "id_columns", "no columns for dataset b"},
		{`"id_columns": {"a": ["e"], "b": ["e"], "c": ["e"]}`, "id_columns", `names dataset "c", which the session does not use`},
		{`"id_columns": {"a": ["e", "p"], "b": ["e"]}`, "id_columns", "same number of key columns"},
		{`"id_columns": {"a": ["e", "e"], "b": ["e", "p"]}`, "id_columns", "lists column e twice"},
		{``, "id_columns", "name the key columns"},
		{`"id_columns": {"a": ["e"], "b": ["e"]}, "keys": [{"a": ["p"], "b": ["p"]}]`, "keys", "not both"},
		{`"keys": [{"a": ["e"], "b": ["e"]}, {"a": ["p"]}]`, "keys[1]", "no columns for dataset b"},
		{`"id_columns": {"a": ["e"], "b": ["e"]}, "normalize": ["soundex"]`, "normalize", "unknown normalization"},
		{`"id_columns": {"a": ["e"], "b": ["e"]}, "normalize": ["trim", "trim"]`, "normalize", "listed twice"},
		{`"id_columns": {"a": ["e"], "b": ["e"]}, "min_clients": 1`, "min_clients", "every dataset of a record linkage takes part"},
		{`"id_columns": {"a": ["e"], "b": ["e"]}, "round_timeout": "100h"`, "round_timeout", "between 1s and 48h"},
	} {
		_, err := ParseSessionConfig([]byte("{" + base + map[bool]string{true: ", ", false: ""}[tc.body != ""] + tc.body + "}"))
		e, ok := err.(*Error)
		if !ok || e.Field != tc.field || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s: got %v (field %q), want field %q containing %q", tc.body, err, fieldOf(err), tc.field, tc.msg)
		}
	}
	_, err = ParseSessionConfig([]byte(`{"name": "x", "datasets": ["a"], "rounds": 1, "task": {"type": "regression", "target": "y"}, "model": {"package": "glm"}, "id_columns": {"a": ["e"]}}`))
	if e, ok := err.(*Error); !ok || e.Field != "id_columns" || !strings.Contains(e.Message, "belongs to prl (private record linkage) sessions, not hfl") {
		t.Errorf("a prl field in an hfl session: %v", err)
	}
}
