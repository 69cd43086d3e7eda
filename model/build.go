package model

import (
	"sort"
	"strings"

	"github.com/silofl/silo"
	"github.com/silofl/silo/internal/ml"
)

// Build makes the preprocessing of a session's model from its clients'
// merged statistics (silo.StatsOutput after federated merging): the
// standardisation of numeric features, the one-hot categories and the
// classes. columns are the first dataset's, for the column types. It also
// returns the features left out because no client had enough values of them.
func Build(task silo.TaskConfig, columns []silo.Column, identifiers []string, merged silo.StatsOutput) (*Preprocessing, []string, error) {
	types := map[string]string{}
	for _, c := range columns {
		types[c.Name] = c.Type
	}
	prep := &Preprocessing{Task: task.Type, Target: task.Target, TargetType: types[task.Target], Identifiers: identifiers}
	var skipped []string
	for _, f := range task.Features {
		if cats, ok := merged.Categories[f]; ok {
			list := make([]string, 0, len(cats))
			for c := range cats {
				list = append(list, c)
			}
			sort.Strings(list)
			if len(list) == 0 {
				skipped = append(skipped, f)
				continue
			}
			prep.Features = append(prep.Features, Feature{Name: f, Type: types[f], Kind: Categorical, Categories: list})
			continue
		}
		st, ok := merged.Numeric[f]
		if !ok || st.Count == 0 {
			skipped = append(skipped, f)
			continue
		}
		mean, std := st.MeanStd()
		prep.Features = append(prep.Features, Feature{Name: f, Type: types[f], Kind: Numeric, Mean: mean, Std: std})
	}
	if len(prep.Features) == 0 {
		return nil, nil, silo.Errorf(silo.EINVALID, "no feature has enough values to train on (each statistic must cover min_records_per_aggregate rows): %s", strings.Join(skipped, ", "))
	}
	if task.Type == "classification" {
		classes := make([]string, 0, len(merged.Classes))
		for c := range merged.Classes {
			classes = append(classes, c)
		}
		if len(classes) < 2 {
			return nil, nil, silo.Errorf(silo.EINVALID, "the target %s has %d class(es) with enough rows across the datasets; classification needs two or more", task.Target, len(classes))
		}
		var err error
		if prep.Classes, err = OrderClasses(classes, task.PositiveClass); err != nil {
			return nil, nil, silo.FieldErrorf("task.positive_class", "%v", err)
		}
	}
	return prep, skipped, nil
}

// Spec is the model spec of a session config with its preprocessing.
func Spec(cfg *silo.SessionConfig, prep *Preprocessing) ml.Spec {
	m := cfg.Model
	sp := ml.Spec{Package: m.Package, Task: ml.Task(cfg.Task.Type), NumFeatures: prep.Width(), Classes: prep.Classes,
		L1: m.L1, L2: m.L2, HiddenLayers: m.HiddenLayers, Activation: m.Activation, Dropout: m.Dropout}
	if cfg.Task.Type == "regression" {
		sp.Family, sp.TweediePower = m.Family, m.TweediePower
	}
	return sp
}
