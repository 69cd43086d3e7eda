package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/client"
)

const runnersUsage = `
Usage: silo runners SUBCOMMAND

Manages task runners: the compute next to each organisation's data.

  register --provider local|aws|azure --name N [FIELD FLAGS] [-f runner.json]
                          register a runner; its token is printed once
  list [--all]            list runners (--all: deregistered ones too)
  show NAME               show a runner
  edit NAME [FIELD FLAGS] [-f runner.json]
                          change a runner (Azure memory may only go down)
  deregister NAME         retire a runner; its token stops working at once
  token NAME              replace the runner's token and print the new one once
  start NAME | stop NAME  run a local runner as a child of the server
  provision NAME          create or verify a cloud runner's storage again
  bundle NAME -o FILE [--server-url URL]
                          download a runner's deployment bundle (zip); URL is
                          where the runner reaches this server (default: the
                          server's --public-url; a cloud runner needs one)
  check NAME              run a diagnostics task (storage, resources) and show it
  tasks NAME              the runner's recent tasks
  logs NAME [--task ID]   task logs

Field flags are the fields of the runner with dashes: --storage-path,
--vcpu, --memory-gb, --region, --provisioner-role-arn, --vpc-id,
--public-subnets a,b, --service-principal-secret … 'silo runners register -h'
lists them all, and docs/runners.md gives each one's rule and default. -f
takes the same fields as a JSON object; flags given win over the file.
`

func cmdRunners(ctx context.Context, args []string, s streams) int {
	return runGroup(ctx, s, "runners", runnersUsage, map[string]subcommand{
		"register":   runnersRegister,
		"list":       runnersList,
		"show":       runnersShow,
		"edit":       runnersEdit,
		"deregister": runnersDeregister,
		"token":      runnersToken,
		"start":      runnersStart,
		"stop":       runnersStop,
		"provision":  runnersProvision,
		"bundle":     runnersBundle,
		"check":      runnersCheck,
		"tasks":      runnersTasks,
		"logs":       runnersLogs,
	}, args)
}

// specFlags adds one flag per RunnerSpec field (json name with dashes) and
// -f, and returns a function that collects what was given into a JSON
// object: the file's fields, overridden by the flags set.
func specFlags(fs *flag.FlagSet) func() (map[string]any, error) {
	file := fs.String("f", "", "JSON file with the runner's fields")
	t := reflect.TypeOf(silo.RunnerSpec{})
	set := map[string]func() any{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		flagName := strings.ReplaceAll(name, "_", "-")
		switch f.Type.Kind() {
		case reflect.String:
			v := fs.String(flagName, "", silo.RunnerFieldHelp(name))
			set[flagName] = func() any { return *v }
		case reflect.Int:
			v := fs.Int(flagName, 0, silo.RunnerFieldHelp(name))
			set[flagName] = func() any { return *v }
		case reflect.Slice:
			v := new(listFlag)
			fs.Var(v, flagName, silo.RunnerFieldHelp(name))
			set[flagName] = func() any { return []string(*v) }
		}
	}
	return func() (map[string]any, error) {
		fields := map[string]any{}
		if *file != "" {
			// #nosec G304 G703 -- the --file the user gave
			b, err := os.ReadFile(*file)
			if err != nil {
				return nil, silo.Errorf(silo.EINVALID, "-f: %v", err)
			}
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber()
			if err := dec.Decode(&fields); err != nil {
				return nil, silo.Errorf(silo.EINVALID, "%s is not a JSON object of runner fields: %v", *file, err)
			}
		}
		fs.Visit(func(f *flag.Flag) {
			if get, ok := set[f.Name]; ok {
				fields[strings.ReplaceAll(f.Name, "-", "_")] = get()
			}
		})
		// Unknown fields and values of the wrong type are reported here,
		// before anything is sent, as mistakes in the named field.
		b, _ := json.Marshal(fields)
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&silo.RunnerSpec{}); err != nil {
			return nil, specFieldError(err, *file)
		}
		return fields, nil
	}
}

// specFieldError turns a decoding error of runner fields into an EINVALID
// error naming the field.
func specFieldError(err error, file string) error {
	where := ""
	if file != "" {
		where = " in " + file
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return silo.FieldErrorf(typ.Field, "field %q%s must be %s, not %s", typ.Field, where, jsonKind(typ.Type.Kind()), typ.Value)
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return silo.FieldErrorf(f, "unknown runner field %q%s: see 'silo runners register -h' for the field names", f, where)
	}
	return silo.Errorf(silo.EINVALID, "runner fields%s: %v", where, err)
}

func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	}
	return "a number"
}

func runnersRegister(ctx context.Context, c *cmd, args []string) error {
	fields := specFlags(c.flags)
	if _, err := c.parse(args); err != nil {
		return err
	}
	given, err := fields()
	if err != nil {
		return err
	}
	var spec silo.RunnerSpec
	b, _ := json.Marshal(given)
	_ = json.Unmarshal(b, &spec)
	if spec.Name == "" || spec.Provider == "" {
		return usagef("--name and --provider (local, aws or azure) are required")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	r, err := cl.RegisterRunner(ctx, spec)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(r)
	}
	fmt.Fprintf(c.Stdout, "Registered %s runner %s (%s).\n", r.Provider, r.Name, r.Status)
	if r.StatusReason != "" {
		fmt.Fprintf(c.Stdout, "%s\n", r.StatusReason)
	}
	switch {
	case r.Token != "" && r.Provider == silo.ProviderLocal:
		fmt.Fprintf(c.Stdout, "\nIts token (shown once; 'silo runners token %s' makes a new one):\n\n  %s\n\nRun it next to the data with:\n\n  silo runner --server %s --token %s --storage-root %s\n\nor let the server run it: silo runners start %s\n",
			r.Name, r.Token, cl.BaseURL(), r.Token, strings.TrimPrefix(r.StoragePath, "file://"), r.Name)
	case r.Token != "":
		fmt.Fprintf(c.Stdout, "\nIts token (shown once; keep it for the deployment, or make a new one later with 'silo runners token %s'):\n\n  %s\n\n", r.Name, r.Token)
		fmt.Fprintf(c.Stdout, "Next: download its deployment bundle with\n\n  silo runners bundle %s -o %s.zip --server-url URL\n\n(URL: where the runner's network reaches this server; not needed when the server runs with --public-url), then follow its README, pasting the token above when it asks.\n", r.Name, r.Name)
	default:
		fmt.Fprintf(c.Stdout, "Next: download its deployment bundle with 'silo runners bundle %s -o %s.zip' and follow its README.\n", r.Name, r.Name)
	}
	return nil
}

func runnersList(ctx context.Context, c *cmd, args []string) error {
	all := c.flags.Bool("all", false, "include deregistered runners")
	_, cl, err := c.connect(args)
	if err != nil {
		return err
	}
	runners, err := cl.ListRunners(ctx, *all)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(runners)
	}
	if len(runners) == 0 {
		fmt.Fprintln(c.Stdout, "No task runners yet. Register one with: silo runners register --provider local --name NAME --storage-path file:///srv/data")
		return nil
	}
	tw := c.table()
	fmt.Fprintln(tw, "NAME\tPROVIDER\tSTATUS\tVCPU\tMEMORY\tSTORAGE\tLAST HEARTBEAT")
	for _, r := range runners {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Name, r.Provider, r.Status, r.VCPU, memoryText(r), r.StoragePath, fmtTimePtr(r.LastHeartbeat, "never"))
	}
	return tw.Flush()
}

func memoryText(r *silo.Runner) string {
	if r.Provider == silo.ProviderAzure {
		return strconv.Itoa(r.MemoryMB) + " MB"
	}
	return strconv.Itoa(r.MemoryGB) + " GB"
}

func runnersShow(ctx context.Context, c *cmd, args []string) error {
	pos, cl, err := c.connect(args, "NAME")
	if err != nil {
		return err
	}
	r, err := cl.GetRunner(ctx, pos[0])
	if err != nil {
		return err
	}
	return c.printRunner(r)
}

// printRunner shows a runner: every field that is set, as "field: value".
func (c *cmd) printRunner(r *silo.Runner) error {
	if c.json {
		return c.printJSON(r)
	}
	tw := c.table()
	fmt.Fprintf(tw, "name:\t%s\nprovider:\t%s\nstatus:\t%s\n", r.Name, r.Provider, r.Status)
	if r.StatusReason != "" {
		fmt.Fprintf(tw, "reason:\t%s\n", r.StatusReason)
	}
	var fields map[string]any
	b, _ := json.Marshal(r.RunnerSpec)
	_ = json.Unmarshal(b, &fields)
	t := reflect.TypeOf(silo.RunnerSpec{})
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if v, ok := fields[name]; ok && name != "name" && name != "provider" {
			fmt.Fprintf(tw, "%s:\t%v\n", name, v)
		}
	}
	if len(r.SecretsSet) > 0 {
		fmt.Fprintf(tw, "secrets set:\t%s\n", strings.Join(r.SecretsSet, ", "))
	}
	fmt.Fprintf(tw, "last heartbeat:\t%s\n", fmtTimePtr(r.LastHeartbeat, "never"))
	if r.AgentVersion != "" {
		fmt.Fprintf(tw, "agent:\tversion %s, %d vCPU, %d MB\n", r.AgentVersion, r.AgentVCPU, r.AgentMemoryMB)
	}
	if p := r.Policy; p != nil {
		unmatched := ""
		if p.RefuseUnmatched {
			unmatched = "; data outside them refused"
		}
		fmt.Fprintf(tw, "policy:\tpinned by the data owner: %d rule(s)%s (%s)\n", len(p.Rules), unmatched, p.Digest)
		for i := range p.Rules {
			rule := p.Rules[i]
			title := rule.Title(i)
			rule.Name, rule.Prefix = "", ""
			floor, _ := json.Marshal(rule)
			fmt.Fprintf(tw, "\t%s: %s\n", title, floor)
		}
	} else {
		fmt.Fprintf(tw, "policy:\tnone pinned: the server's privacy controls are the floor\n")
	}
	fmt.Fprintf(tw, "registered:\t%s by %s\n", fmtTime(r.CreatedAt), r.CreatedBy)
	if r.Token != "" {
		fmt.Fprintf(tw, "token:\t%s (shown once)\n", r.Token)
	}
	return tw.Flush()
}

func runnersEdit(ctx context.Context, c *cmd, args []string) error {
	fields := specFlags(c.flags)
	pos, err := c.parse(args, "NAME")
	if err != nil {
		return err
	}
	given, err := fields()
	if err != nil {
		return err
	}
	if len(given) == 0 {
		return usagef("nothing to change: give field flags or -f FILE")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	r, err := cl.EditRunner(ctx, pos[0], given)
	if err != nil {
		return err
	}
	return c.printRunner(r)
}

// runnerAction runs a one-argument runner call, given as a method
// expression such as (*client.Client).DeregisterRunner, and shows the result.
func runnerAction(ctx context.Context, c *cmd, args []string, call func(*client.Client, context.Context, string) (*silo.Runner, error), done string) error {
	pos, cl, err := c.connect(args, "NAME")
	if err != nil {
		return err
	}
	r, err := call(cl, ctx, pos[0])
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(r)
	}
	fmt.Fprintf(c.Stdout, done+"\n", r.Name, r.Status)
	if r.Token != "" {
		fmt.Fprintf(c.Stdout, "\nNew token (shown once; the old one no longer works):\n\n  %s\n", r.Token)
	}
	return nil
}

func runnersDeregister(ctx context.Context, c *cmd, args []string) error {
	return runnerAction(ctx, c, args, (*client.Client).DeregisterRunner, "Runner %s is %s; its token no longer works.")
}

func runnersToken(ctx context.Context, c *cmd, args []string) error {
	return runnerAction(ctx, c, args, (*client.Client).RotateRunnerToken, "Runner %s (%s) has a new token.")
}

func runnersStart(ctx context.Context, c *cmd, args []string) error {
	return runnerAction(ctx, c, args, (*client.Client).StartRunner, "Runner %s is starting under the server (now %s).")
}

func runnersStop(ctx context.Context, c *cmd, args []string) error {
	return runnerAction(ctx, c, args, (*client.Client).StopRunner, "Runner %s was stopped (%s until the server notices the missed heartbeats).")
}

func runnersProvision(ctx context.Context, c *cmd, args []string) error {
	return runnerAction(ctx, c, args, (*client.Client).ProvisionRunner, "Runner %s is %s.")
}

func runnersBundle(ctx context.Context, c *cmd, args []string) error {
	out := c.flags.String("o", "", "file to write the zip to")
	serverURL := c.flags.String("server-url", "", "URL the deployed runner dials to reach the server (default: the server's --public-url)")
	pos, err := c.parse(args, "NAME")
	if err != nil {
		return err
	}
	if *out == "" {
		return usagef("-o FILE is required")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := cl.DownloadRunnerBundle(ctx, pos[0], *serverURL, &buf); err != nil {
		return err
	}
	// #nosec G703 -- the --out path the user gave
	if err := os.WriteFile(*out, buf.Bytes(), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "Wrote the deployment bundle of %s to %s (%d bytes): unzip it and follow README.md.\n", pos[0], *out, buf.Len())
	return nil
}

func runnersCheck(ctx context.Context, c *cmd, args []string) error {
	wait := c.flags.Duration("wait", 2*time.Minute, "how long to wait for the result")
	pos, cl, err := c.connect(args, "NAME")
	if err != nil {
		return err
	}
	// A runner that is not online cannot answer: say so now rather than
	// wait and leave a task in its queue.
	r, err := cl.GetRunner(ctx, pos[0])
	if err != nil {
		return err
	}
	if r.Status != silo.RunnerOnline {
		return silo.Errorf(silo.ECONFLICT, "runner %s is not online (%s%s), so it cannot run diagnostics: %s", r.Name, r.Status, reasonSuffix(r.StatusReason), startHint(r))
	}
	t, err := cl.QueueDiagnostics(ctx, pos[0], 1, 64)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(*wait)
	for t.Status == silo.TaskQueued || t.Status == silo.TaskRunning {
		if time.Now().After(deadline) {
			// Leave nothing behind: the task would run whenever the
			// runner next asks for work, long after anyone looks.
			if _, cerr := cl.CancelRunnerTask(context.WithoutCancel(ctx), pos[0], t.ID); cerr != nil {
				return fmt.Errorf("no result from runner %s after %s (task %s is %s, and cancelling it failed: %v): see 'silo runners show %s'", pos[0], *wait, t.ID, t.Status, cerr, pos[0])
			}
			return fmt.Errorf("no result from runner %s after %s: task %s is cancelled; see 'silo runners show %s' and 'silo runners logs %s'", pos[0], *wait, t.ID, pos[0], pos[0])
		}
		select {
		case <-ctx.Done():
			_, _ = cl.CancelRunnerTask(context.WithoutCancel(ctx), pos[0], t.ID)
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		tasks, err := cl.RunnerTasks(ctx, pos[0])
		if err != nil {
			return err
		}
		for _, x := range tasks {
			if x.ID == t.ID {
				t = x
			}
		}
	}
	if c.json {
		return c.printJSON(t)
	}
	if t.Status != silo.TaskSucceeded {
		return fmt.Errorf("diagnostics on %s %s: %s", pos[0], t.Status, t.Error)
	}
	var out bytes.Buffer
	_ = json.Indent(&out, t.Output, "", "  ")
	fmt.Fprintf(c.Stdout, "Runner %s is healthy:\n%s\n", pos[0], out.String())
	return nil
}

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

// startHint says how to bring a runner online.
func startHint(r *silo.Runner) string {
	switch {
	case r.Status == silo.RunnerDeregistered:
		return "it is deregistered; register a new one"
	case r.Provider == silo.ProviderLocal:
		return fmt.Sprintf("start it with 'silo runners start %s', or run 'silo runner --server URL --token TOKEN' where the data is", r.Name)
	}
	return fmt.Sprintf("deploy its bundle ('silo runners bundle %s -o %s.zip') and check it with 'silo runners show %s'", r.Name, r.Name, r.Name)
}

func runnersTasks(ctx context.Context, c *cmd, args []string) error {
	pos, cl, err := c.connect(args, "NAME")
	if err != nil {
		return err
	}
	tasks, err := cl.RunnerTasks(ctx, pos[0])
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(tasks)
	}
	if len(tasks) == 0 {
		fmt.Fprintf(c.Stdout, "Runner %s has had no tasks yet. Try: silo runners check %s\n", pos[0], pos[0])
		return nil
	}
	tw := c.table()
	fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tCREATED\tFINISHED\tERROR")
	for _, t := range tasks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Type, t.Status, fmtTime(t.CreatedAt), fmtTimePtr(t.FinishedAt, "-"), orDash(t.Error))
	}
	return tw.Flush()
}

func runnersLogs(ctx context.Context, c *cmd, args []string) error {
	task := c.flags.String("task", "", "only this task's log")
	pos, cl, err := c.connect(args, "NAME")
	if err != nil {
		return err
	}
	lines, err := cl.RunnerLogs(ctx, pos[0], *task, 0)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(lines)
	}
	if len(lines) == 0 {
		fmt.Fprintf(c.Stdout, "No task logs from %s yet.\n", pos[0])
		return nil
	}
	for _, l := range lines {
		fmt.Fprintf(c.Stdout, "%s %-5s %s %s\n", l.Time.Local().Format("2006-01-02 15:04:05"), l.Level, l.TaskID, l.Message)
	}
	return nil
}
