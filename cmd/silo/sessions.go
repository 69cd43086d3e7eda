package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
)

const sessionsUsage = `
Usage: silo sessions SUBCOMMAND

Federated sessions: training (type hfl) and private record linkage (type
prl). The JSON config is explained key by key in docs/sessions.md;
examples/session-*.json are ready to run on the quickstart.

  create -f session.json [--wait]   create a session from its JSON config
  list                              list sessions
  show ID                           status, rounds, latest metrics
  wait ID                           follow a session with a progress bar until it ends
  metrics ID                        metrics of every round (training), or each dataset's overlap (linkage)
  cancel ID                         cancel a pending or running session
`

func cmdSessions(ctx context.Context, args []string, s streams) int {
	return runGroup(ctx, s, "sessions", sessionsUsage, map[string]subcommand{
		"create":  sessionsCreate,
		"list":    sessionsList,
		"show":    sessionsShow,
		"wait":    sessionsWait,
		"metrics": sessionsMetrics,
		"cancel":  sessionsCancel,
	}, args)
}

func sessionsCreate(ctx context.Context, c *cmd, args []string) error {
	file := c.flags.String("f", "", "session config JSON file")
	wait := c.flags.Bool("wait", false, "follow the session until it ends")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if *file == "" {
		return usagef("-f session.json is required")
	}
	// #nosec G304 G703 -- the --file the user gave
	cfg, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	s, err := cl.CreateSession(ctx, cfg)
	if err != nil {
		return err
	}
	if *wait {
		return waitSession(ctx, c, cl, s.ID)
	}
	if c.json {
		return c.printJSON(s)
	}
	fmt.Fprintf(c.Stdout, "Created session %s (%s): %s.\nFollow it with: silo sessions wait %s\n", s.ID, s.Name, s.Status, s.ID)
	return nil
}

func sessionsList(ctx context.Context, c *cmd, args []string) error {
	_, cl, err := c.connect(args)
	if err != nil {
		return err
	}
	list, err := cl.ListSessions(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(list)
	}
	if len(list) == 0 {
		fmt.Fprintln(c.Stdout, "No sessions yet. Create one with: silo sessions create -f session.json")
		return nil
	}
	tw := c.table()
	fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tROUND\tLOSS\tCREATED\tBY")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", s.ID, s.Name, s.Status, s.Round, s.Rounds, metricText(s.Latest, "loss"), fmtTime(s.CreatedAt), s.CreatedBy)
	}
	return tw.Flush()
}

func metricText(m map[string]float64, k string) string {
	if v, ok := m[k]; ok {
		return fmt.Sprintf("%.4g", v)
	}
	return "-"
}

func sessionsShow(ctx context.Context, c *cmd, args []string) error {
	pos, cl, err := c.connect(args, "ID")
	if err != nil {
		return err
	}
	s, err := cl.GetSession(ctx, pos[0])
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(s)
	}
	printSession(c.Stdout, s)
	return nil
}

func printSession(w io.Writer, s *silo.Session) {
	fmt.Fprintf(w, "%s (%s): %s, round %d of %d\n", s.ID, s.Name, s.Status, s.Round, s.Rounds)
	if s.StatusReason != "" {
		fmt.Fprintf(w, "  %s\n", s.StatusReason)
	}
	if len(s.Latest) > 0 {
		fmt.Fprintf(w, "  latest: %s\n", formatMetrics(s.Latest))
	}
	if s.BestRound > 0 {
		fmt.Fprintf(w, "  best round: %d (by %s)\n", s.BestRound, s.Config.SaveBestModel.Metric)
	}
	for d, e := range s.EpsilonSpent {
		fmt.Fprintf(w, "  epsilon spent on %s: %.3g\n", d, e)
	}
}

func formatMetrics(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "round" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.4g", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func sessionsWait(ctx context.Context, c *cmd, args []string) error {
	pos, cl, err := c.connect(args, "ID")
	if err != nil {
		return err
	}
	return waitSession(ctx, c, cl, pos[0])
}

// waitSession follows a session until it ends and fails unless it
// completes; with --json it prints the final session.
func waitSession(ctx context.Context, c *cmd, cl *client.Client, id string) error {
	out := c.Stdout
	if c.json {
		out = io.Discard
	}
	s, err := followSession(ctx, out, cl, id)
	if err != nil {
		return err
	}
	if c.json {
		if err := c.printJSON(s); err != nil {
			return err
		}
	} else if s.Status == silo.SessionCompleted && s.Config.Type == silo.SessionPRL {
		fmt.Fprintf(c.Stdout, "Completed: %s\nOverlap: silo sessions metrics %s\n", s.StatusReason, id)
	} else if s.Status == silo.SessionCompleted {
		fmt.Fprintf(c.Stdout, "Completed: %s\nMetrics: silo sessions metrics %s   Model: silo models download %s -o model.json\n", formatMetrics(s.Latest), id, id)
	}
	if s.Status != silo.SessionCompleted {
		return fmt.Errorf("session %s %s: %s", id, s.Status, s.StatusReason)
	}
	return nil
}

// followSession draws a session's progress on w until it ends: a live bar
// on a terminal, one line per change otherwise.
func followSession(ctx context.Context, w io.Writer, cl *client.Client, id string) (*silo.Session, error) {
	tty := isTerminal(w)
	last := ""
	for {
		s, err := cl.GetSession(ctx, id)
		if err != nil {
			return nil, err
		}
		line := progressLine(s)
		if tty {
			fmt.Fprintf(w, "\r%-110s", line)
		} else if line != last {
			fmt.Fprintln(w, line)
		}
		last = line
		if s.Status.Done() {
			if tty {
				fmt.Fprintln(w)
			}
			return s, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// progressLine draws "[#####·····] round 3/10  loss 0.4321  running"; a
// session without rounds (a linkage) shows its current step's progress,
// "[####······] 1200000/4000000 records blinded  linking: …".
func progressLine(s *silo.Session) string {
	const width = 20
	filled := 0
	if s.Rounds > 0 {
		filled = s.Round * width / s.Rounds
	}
	if s.Rounds == 0 {
		if s.Status == silo.SessionCompleted {
			filled = width
		}
		step := ""
		if p := s.Progress; p != nil && p.Total > 0 {
			filled = int(min(p.Done, p.Total) * width / p.Total)
			step = fmt.Sprintf(" %d/%d %s ", p.Done, p.Total, p.Unit)
		}
		bar := strings.Repeat("#", filled) + strings.Repeat("·", width-filled)
		return fmt.Sprintf("[%s]%s %s", bar, step, cmpOr(s.StatusReason, string(s.Status)))
	}
	bar := strings.Repeat("#", filled) + strings.Repeat("·", width-filled)
	loss := ""
	if v, ok := s.Latest["loss"]; ok {
		loss = fmt.Sprintf("  loss %.4f", v)
	}
	return fmt.Sprintf("[%s] round %d/%d%s  %s", bar, s.Round, s.Rounds, loss, cmpOr(s.StatusReason, string(s.Status)))
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func sessionsMetrics(ctx context.Context, c *cmd, args []string) error {
	pos, cl, err := c.connect(args, "ID")
	if err != nil {
		return err
	}
	s, err := cl.GetSession(ctx, pos[0])
	if err != nil {
		return err
	}
	if s.Config.Type == silo.SessionPRL {
		return linkageMetrics(ctx, c, cl, s)
	}
	m, err := cl.SessionMetrics(ctx, pos[0])
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(m)
	}
	if len(m.Federated) == 0 {
		fmt.Fprintf(c.Stdout, "No round of %s has completed yet.\n", pos[0])
		return nil
	}
	fmt.Fprintln(c.Stdout, "Federated:")
	for _, r := range m.Federated {
		fmt.Fprintf(c.Stdout, "  round %3.0f  %s\n", r["round"], formatMetrics(r))
	}
	fmt.Fprintln(c.Stdout, "Clients:")
	for _, cm := range m.Clients {
		fmt.Fprintf(c.Stdout, "  round %3d  %-16s %s\n", cm.Round, cm.Dataset, formatMetrics(cm.Values))
	}
	return nil
}

// linkageMetrics prints a record linkage's overlap per dataset.
func linkageMetrics(ctx context.Context, c *cmd, cl *client.Client, s *silo.Session) error {
	m, err := cl.LinkageMetrics(ctx, s.ID)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(m)
	}
	if len(m.Clients) == 0 {
		fmt.Fprintf(c.Stdout, "The linkage %s is %s: no overlap yet.\n", s.ID, s.Status)
		return nil
	}
	tw := c.table()
	fmt.Fprintln(tw, "DATASET\tRECORDS\tLINKED\tFRACTION\tNO KEY\tREPEATED KEYS")
	for _, cm := range m.Clients {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.4f\t%d\t%d\n", cm.Dataset, cm.NRecords, cm.NOverlappedRecords, cm.FracOverlapped, cm.NNullKeys, cm.NDuplicateKeys)
	}
	return tw.Flush()
}

func sessionsCancel(ctx context.Context, c *cmd, args []string) error {
	pos, cl, err := c.connect(args, "ID")
	if err != nil {
		return err
	}
	s, err := cl.CancelSession(ctx, pos[0])
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(s)
	}
	fmt.Fprintf(c.Stdout, "Session %s is %s.\n", s.ID, s.Status)
	return nil
}

const predictUsage = `
Usage: silo predict --session ID --dataset NAME [--best] [--format csv|parquet]

Runs a session's model on a registered dataset, on the dataset's own runner.
The runner writes the predictions to its own storage and reports how many
rows and where (rows and path with --json); no row comes back.
`

func cmdPredict(ctx context.Context, args []string, s streams) int {
	c := newCmd(s, "predict", predictUsage)
	var req client.PredictRequest
	c.flags.StringVar(&req.Session, "session", "", "session ID")
	c.flags.StringVar(&req.Dataset, "dataset", "", "dataset name")
	c.flags.BoolVar(&req.Best, "best", false, "use the best round's model")
	c.flags.StringVar(&req.Format, "format", "csv", "csv or parquet")
	return c.exit(func() error {
		if _, err := c.parse(args); err != nil {
			return err
		}
		if req.Session == "" || req.Dataset == "" {
			return usagef("--session and --dataset are required")
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		out, err := cl.Predict(ctx, req)
		if err != nil {
			return err
		}
		if c.json {
			return c.printJSON(out)
		}
		fmt.Fprintf(c.Stdout, "Predicted %d rows of %s; the runner wrote them to %s\n", out.Rows, req.Dataset, out.Path)
		return nil
	}())
}
