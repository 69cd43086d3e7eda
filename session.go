package silo

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
)

// SessionStatus is a session's lifecycle state (SPEC §4).
type SessionStatus string

const (
	SessionPending   SessionStatus = "pending" // waiting for min_clients runners
	SessionRunning   SessionStatus = "running"
	SessionCompleted SessionStatus = "completed"
	SessionFailed    SessionStatus = "failed"
	SessionCancelled SessionStatus = "cancelled"
)

// Done reports whether the session has ended.
func (s SessionStatus) Done() bool {
	return s == SessionCompleted || s == SessionFailed || s == SessionCancelled
}

// SessionConfig is the JSON a Model Builder writes to create a session.
type SessionConfig struct {
	Name                string           `json:"name"`
	Type                string           `json:"type"`
	Datasets            []string         `json:"datasets"`
	MinClients          int              `json:"min_clients"`
	Rounds              int              `json:"rounds"`
	RoundTimeout        string           `json:"round_timeout"`
	Task                TaskConfig       `json:"task"`
	Model               ModelConfig      `json:"model"`
	Optimizer           OptimizerConfig  `json:"optimizer"`
	Strategy            StrategyConfig   `json:"strategy"`
	DifferentialPrivacy *DPConfig        `json:"differential_privacy,omitempty"`
	Validation          ValidationConfig `json:"validation"`
	SaveBestModel       SaveBestConfig   `json:"save_best_model"`
	Seed                int64            `json:"seed"`
	// Private record linkage (type prl): see session_prl.go.
	IDColumns map[string][]string   `json:"id_columns,omitempty"`
	Normalize []string              `json:"normalize,omitempty"`
	Keys      []map[string][]string `json:"keys,omitempty"`
}

// TaskConfig says what to learn.
type TaskConfig struct {
	Type          string   `json:"type"` // classification or regression
	Target        string   `json:"target"`
	Features      []string `json:"features"`    // empty: every eligible column
	Categorical   []string `json:"categorical"` // plus every string column
	PositiveClass string   `json:"positive_class,omitempty"`
}

// ModelConfig chooses the model package and its settings.
type ModelConfig struct {
	Package      string  `json:"package"` // glm or ffnet
	Family       string  `json:"family,omitempty"`
	TweediePower float64 `json:"tweedie_power,omitempty"`
	L1           float64 `json:"l1"`
	L2           float64 `json:"l2"`
	HiddenLayers []int   `json:"hidden_layers,omitempty"`
	Activation   string  `json:"activation,omitempty"`
	Dropout      float64 `json:"dropout,omitempty"`
}

// OptimizerConfig is the clients' local optimiser.
type OptimizerConfig struct {
	Name         string  `json:"name"` // sgd, adam or lbfgs (glm only)
	LearningRate float64 `json:"learning_rate"`
	Momentum     float64 `json:"momentum"`
	BatchSize    int     `json:"batch_size"`
	LocalEpochs  int     `json:"local_epochs"`
}

// StrategyConfig is the server's aggregation strategy.
type StrategyConfig struct {
	Name   string             `json:"name"`
	Params map[string]float64 `json:"params"`
}

// DPConfig asks for DP-SGD meeting (Epsilon, Delta) over the whole session.
type DPConfig struct {
	Epsilon     float64 `json:"epsilon"`
	Delta       float64 `json:"delta"`
	MaxGradNorm float64 `json:"max_grad_norm"`
}

// ValidationConfig holds out a fraction of each client's rows for testing.
type ValidationConfig struct {
	Fraction float64 `json:"fraction"`
}

// SaveBestConfig says which round's model is "best".
type SaveBestConfig struct {
	Metric string `json:"metric"`
	Mode   string `json:"mode"` // min or max
}

// Model packages, families, strategies and optimisers the product offers.
var (
	ModelPackages = []string{"glm", "ffnet"}
	GLMFamilies   = []string{"gaussian", "binomial", "poisson", "gamma", "tweedie"}
	Strategies    = []string{"fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad"}
	Optimizers    = []string{"sgd", "adam", "lbfgs"}
	Activations   = []string{"relu", "tanh"}
)

var sessionName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,99}$`)

// Validate checks the config on its own and fills defaults; checks against
// datasets (schemas, privacy controls) happen on the server. It reports
// every problem at once, as one *Error whose Fields name them.
func (c *SessionConfig) Validate() error {
	var v fieldErrors
	c.Name = strings.TrimSpace(c.Name)
	if !sessionName.MatchString(c.Name) {
		v.add("name", "session name %q must be 1–100 letters, digits, '.', '_' or '-'", c.Name)
	}
	if c.Type == "" {
		c.Type = SessionHFL
	}
	if !slices.Contains(SessionTypes, c.Type) {
		v.add("type", "unknown session type %q: use one of %s", c.Type, strings.Join(SessionTypes, ", "))
		return v.err()
	}
	if len(c.Datasets) == 0 {
		v.add("datasets", "list the datasets to use, by name (see 'silo datasets list')")
	}
	seen := map[string]bool{}
	for _, d := range c.Datasets {
		if seen[d] {
			v.add("datasets", "dataset %q is listed twice", d)
		}
		seen[d] = true
	}
	switch c.Type {
	case SessionHFL:
		if f := c.prlField(); f != "" {
			v.add(f, "%s belongs to prl (private record linkage) sessions, not %s", f, c.Type)
		}
		v.addErr(c.validateHFL())
		return v.err()
	case SessionPRL:
		v.addErr(c.validatePRL())
		return v.err()
	}
	v.add("type", "session type %q is not built yet: hfl (horizontal federated learning) and prl (private record linkage) run today", c.Type)
	return v.err()
}

// validateHFL checks and completes an hfl session's config, reporting every
// problem.
func (c *SessionConfig) validateHFL() error {
	var v fieldErrors
	if c.MinClients == 0 {
		c.MinClients = len(c.Datasets)
	}
	if c.MinClients < 1 || c.MinClients > max(len(c.Datasets), 1) {
		v.add("min_clients", "min_clients must be between 1 and the number of datasets (%d)", len(c.Datasets))
	}
	if c.Rounds < 1 || c.Rounds > 10000 {
		v.add("rounds", "rounds must be between 1 and 10000")
	}
	if c.RoundTimeout == "" {
		c.RoundTimeout = "5m"
	}
	if d, err := time.ParseDuration(c.RoundTimeout); err != nil || d < time.Second || d > 24*time.Hour {
		v.add("round_timeout", "round_timeout %q must be a duration between 1s and 24h, such as 5m", c.RoundTimeout)
	}
	c.Task.validate(&v)
	c.Model.validate(&v, c.Task.Type)
	c.Optimizer.validate(&v)
	c.Strategy.validate(&v)
	c.checkLBFGS(&v)
	if dp := c.DifferentialPrivacy; dp != nil {
		if !(dp.Epsilon > 0) || math.IsInf(dp.Epsilon, 0) {
			v.add("differential_privacy.epsilon", "epsilon must be a positive number (e.g. 4.0)")
		}
		if !(dp.Delta > 0 && dp.Delta < 0.01) {
			v.add("differential_privacy.delta", "delta must be above 0 and below 0.01 (e.g. 1e-5)")
		}
		if dp.MaxGradNorm == 0 {
			dp.MaxGradNorm = 1
		}
		if !(dp.MaxGradNorm > 0) || math.IsInf(dp.MaxGradNorm, 0) {
			v.add("differential_privacy.max_grad_norm", "max_grad_norm must be a positive number (e.g. 1.0)")
		}
	}
	if c.Validation.Fraction == 0 {
		c.Validation.Fraction = 0.2
	}
	if !(c.Validation.Fraction > 0 && c.Validation.Fraction < 1) {
		v.add("validation.fraction", "validation.fraction must be between 0 and 1 (e.g. 0.2)")
	}
	if c.SaveBestModel.Metric == "" {
		c.SaveBestModel.Metric = "loss"
	}
	if c.SaveBestModel.Mode == "" {
		c.SaveBestModel.Mode = "min"
		if c.SaveBestModel.Metric != "loss" && !strings.HasSuffix(c.SaveBestModel.Metric, "mse") && !strings.HasSuffix(c.SaveBestModel.Metric, "mae") {
			c.SaveBestModel.Mode = "max"
		}
	}
	if !v.has("task.type") && !slices.Contains(MetricsFor(c.Task.Type), c.SaveBestModel.Metric) {
		v.add("save_best_model.metric", "save_best_model.metric %q is not reported for %s: use one of %s", c.SaveBestModel.Metric, c.Task.Type, strings.Join(MetricsFor(c.Task.Type), ", "))
	}
	if c.SaveBestModel.Mode != "min" && c.SaveBestModel.Mode != "max" {
		v.add("save_best_model.mode", "save_best_model.mode must be min or max")
	}
	return v.err()
}

// MetricsFor lists the federated metrics of a task type.
func MetricsFor(task string) []string {
	if task == "regression" {
		return []string{"loss", "mse", "mae", "r2"}
	}
	return []string{"loss", "accuracy", "roc_auc", "log_loss"}
}

func (t *TaskConfig) validate(v *fieldErrors) {
	if t.Type != "classification" && t.Type != "regression" {
		v.add("task.type", "task.type must be classification or regression, not %q", t.Type)
	}
	if strings.TrimSpace(t.Target) == "" {
		v.add("task.target", "task.target is required: the column to predict")
	}
	if t.Target != "" && slices.Contains(t.Features, t.Target) {
		v.add("task.features", "the target %q cannot also be a feature", t.Target)
	}
}

func (m *ModelConfig) validate(v *fieldErrors, task string) {
	switch m.Package {
	case "glm":
		if m.Family == "" {
			m.Family = map[string]string{"classification": "binomial", "regression": "gaussian"}[task]
		}
		switch {
		case m.Family == "" && task != "classification" && task != "regression":
			// task.type is wrong, and reported: no family to infer.
		case !slices.Contains(GLMFamilies, m.Family):
			v.add("model.family", "unknown glm family %q: use one of %s", m.Family, strings.Join(GLMFamilies, ", "))
		case task == "classification" && m.Family != "binomial":
			v.add("model.family", "a classification glm uses family binomial (multinomial for more than two classes), not %s", m.Family)
		case task == "regression" && m.Family == "binomial":
			v.add("model.family", "family binomial is for classification; for regression use gaussian, poisson, gamma or tweedie")
		}
		if m.Family == "tweedie" {
			if m.TweediePower == 0 {
				m.TweediePower = 1.5
			}
			if !(m.TweediePower > 1 && m.TweediePower < 2) {
				v.add("model.tweedie_power", "tweedie_power must be between 1 and 2 (exclusive)")
			}
		}
		if len(m.HiddenLayers) > 0 || m.Activation != "" || m.Dropout != 0 {
			v.add("model.hidden_layers", "hidden_layers, activation and dropout belong to package ffnet, not glm")
		}
	case "ffnet":
		if len(m.HiddenLayers) == 0 {
			m.HiddenLayers = []int{32}
		}
		for _, h := range m.HiddenLayers {
			if h < 1 || h > 4096 {
				v.add("model.hidden_layers", "each hidden layer needs 1–4096 units")
			}
		}
		if len(m.HiddenLayers) > 8 {
			v.add("model.hidden_layers", "at most 8 hidden layers")
		}
		if m.Activation == "" {
			m.Activation = "relu"
		}
		if !slices.Contains(Activations, m.Activation) {
			v.add("model.activation", "activation must be relu or tanh, not %q", m.Activation)
		}
		if !(m.Dropout >= 0 && m.Dropout < 1) {
			v.add("model.dropout", "dropout must be at least 0 and below 1")
		}
		if m.Family != "" {
			v.add("model.family", "family belongs to package glm, not ffnet")
		}
	default:
		v.add("model.package", "unknown model package %q: use glm or ffnet", m.Package)
	}
	if !(m.L1 >= 0) || !(m.L2 >= 0) || math.IsInf(m.L1+m.L2, 0) {
		v.add("model.l1", "l1 and l2 must be zero or positive")
	}
}

func (o *OptimizerConfig) validate(v *fieldErrors) {
	if o.Name == "" {
		o.Name = "sgd"
	}
	if !slices.Contains(Optimizers, o.Name) {
		v.add("optimizer.name", "optimizer must be sgd, adam or lbfgs, not %q", o.Name)
	}
	if o.LearningRate == 0 {
		o.LearningRate = map[string]float64{"sgd": 0.1, "adam": 0.001, "lbfgs": 1}[o.Name]
	}
	if !(o.LearningRate > 0 && o.LearningRate <= 10) {
		v.add("optimizer.learning_rate", "learning_rate must be above 0 and at most 10")
	}
	if !(o.Momentum >= 0 && o.Momentum < 1) {
		v.add("optimizer.momentum", "momentum must be at least 0 and below 1")
	}
	if o.Name == "lbfgs" {
		// L-BFGS takes full-batch steps: every iteration uses all of a
		// runner's training rows, and local_epochs caps the iterations.
		if o.Momentum != 0 {
			v.add("optimizer.momentum", "momentum is for sgd; lbfgs estimates the curvature itself, so leave momentum out")
		}
		if o.BatchSize != 0 {
			v.add("optimizer.batch_size", "lbfgs uses all of a runner's training rows in every iteration; leave batch_size out")
		}
		if o.LocalEpochs == 0 {
			o.LocalEpochs = 100
		}
		if o.LocalEpochs < 1 || o.LocalEpochs > 1000 {
			v.add("optimizer.local_epochs", "local_epochs (for lbfgs, the most iterations per round) must be between 1 and 1000")
		}
		return
	}
	if o.BatchSize == 0 {
		o.BatchSize = 64
	}
	if o.BatchSize < 1 || o.BatchSize > 1<<20 {
		v.add("optimizer.batch_size", "batch_size must be between 1 and 1048576")
	}
	if o.LocalEpochs == 0 {
		o.LocalEpochs = 1
	}
	if o.LocalEpochs < 1 || o.LocalEpochs > 1000 {
		v.add("optimizer.local_epochs", "local_epochs must be between 1 and 1000")
	}
}

// checkLBFGS refuses the combinations L-BFGS cannot honour: it solves a
// smooth, deterministic full-batch objective, which DP-SGD's noisy
// per-example minibatch steps, an L1 penalty and dropout are not; and it is
// offered for glm, whose local problem is convex.
func (c *SessionConfig) checkLBFGS(v *fieldErrors) {
	if c.Optimizer.Name != "lbfgs" {
		return
	}
	switch {
	case c.Model.Package != "glm":
		v.add("optimizer.name", "optimizer lbfgs is for package glm; train %s with sgd or adam", c.Model.Package)
	case c.DifferentialPrivacy != nil:
		v.add("optimizer.name", "differential privacy trains with DP-SGD, which needs optimizer sgd or adam: lbfgs takes exact full-batch steps that DP-SGD cannot privatise")
	case c.Model.L1 > 0:
		v.add("model.l1", "optimizer lbfgs cannot apply an l1 penalty (it is not differentiable at zero); use l2 with lbfgs, or sgd or adam for l1")
	}
}

// StrategyParams lists the parameters each strategy takes.
var StrategyParams = map[string][]string{
	"fedavg": {}, "fedprox": {"mu"},
	"fedadam": {"server_learning_rate", "beta1", "beta2", "tau"}, "fedyogi": {"server_learning_rate", "beta1", "beta2", "tau"},
	"fedadagrad": {"server_learning_rate", "beta1", "tau"},
}

func (s *StrategyConfig) validate(v *fieldErrors) {
	if s.Name == "" {
		s.Name = "fedavg"
	}
	if !slices.Contains(Strategies, s.Name) {
		v.add("strategy.name", "unknown strategy %q: use one of %s", s.Name, strings.Join(Strategies, ", "))
		return
	}
	allowed := StrategyParams[s.Name]
	keys := slices.Sorted(maps.Keys(s.Params))
	for _, k := range keys {
		val := s.Params[k]
		if !slices.Contains(allowed, k) {
			v.add("strategy.params", "strategy %s takes no parameter %q (it takes: %s)", s.Name, k, strings.Join(allowed, ", "))
		} else if math.IsNaN(val) || math.IsInf(val, 0) || val < 0 {
			v.add("strategy.params", "strategy parameter %s must be a finite number ≥ 0", k)
		}
	}
	if s.Name == "fedprox" && s.Params["mu"] == 0 {
		v.add("strategy.params", "fedprox needs params.mu > 0 (e.g. 0.01)")
	}
}

// ParseSessionConfig decodes a config strictly: unknown fields are errors
// that name the field, so a typo never silently changes what is trained.
func ParseSessionConfig(b []byte) (*SessionConfig, error) {
	var c SessionConfig
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, Errorf(EINVALID, "session config: %v", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Session is a training session as the API returns it.
type Session struct {
	ID           string        `json:"id"`
	Name         string        `json:"name"`
	Status       SessionStatus `json:"status"`
	StatusReason string        `json:"status_reason"`
	Round        int           `json:"round"` // last completed
	Rounds       int           `json:"rounds"`
	Phase        string        `json:"phase,omitempty"`
	Config       SessionConfig `json:"config"`
	CreatedBy    string        `json:"created_by"`
	CreatedAt    time.Time     `json:"created_at"`
	UpdatedAt    time.Time     `json:"updated_at"`
	FinishedAt   *time.Time    `json:"finished_at,omitempty"`
	// Latest federated metrics, and the best round by save_best_model.
	Latest    map[string]float64 `json:"latest,omitempty"`
	BestRound int                `json:"best_round,omitempty"`
	// EpsilonSpent per dataset, when the session uses differential privacy.
	EpsilonSpent map[string]float64 `json:"epsilon_spent,omitempty"`
	// Progress is how far the current step is, while one runs and its
	// runners report it (records blinded, for a linkage).
	Progress *StepProgress `json:"progress,omitempty"`
}

// StepProgress is how far a running session's current step is: the work
// its clients' tasks have done, of the total, in one unit.
type StepProgress struct {
	Step  string `json:"step"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
	Unit  string `json:"unit"`
}

// RoundMetrics are one round's federated metrics.
type RoundMetrics map[string]float64

// ClientMetrics are one client's metrics in one round.
type ClientMetrics struct {
	Round   int                `json:"round"`
	Dataset string             `json:"dataset"`
	Values  map[string]float64 `json:"-"`
}

// MarshalJSON flattens Values next to round and dataset (SPEC §5's shape).
func (c ClientMetrics) MarshalJSON() ([]byte, error) {
	m := map[string]any{"round": c.Round, "dataset": c.Dataset}
	for k, v := range c.Values {
		m[k] = v
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads the flattened shape.
func (c *ClientMetrics) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	c.Values = map[string]float64{}
	for k, v := range m {
		switch k {
		case "round":
			f, _ := v.(float64)
			c.Round = int(f)
		case "dataset":
			c.Dataset, _ = v.(string)
		default:
			f, ok := v.(float64)
			if !ok {
				return fmt.Errorf("client metric %q is not a number", k)
			}
			c.Values[k] = f
		}
	}
	return nil
}

// SessionMetrics is what 'silo sessions metrics --json' prints.
type SessionMetrics struct {
	Federated []map[string]float64 `json:"federated"` // each with "round"
	Clients   []ClientMetrics      `json:"clients"`
}
