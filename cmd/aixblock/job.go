package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/node/api"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newJobCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Run containerized jobs: through the market, or on this node with --local",
	}
	cmd.AddCommand(newJobRunCmd(g), newJobSubmitCmd(g), newJobStatusCmd(g), newJobLogsCmd(g),
		newJobListCmd(g), newJobCancelCmd(g), newJobResultsCmd(g), newJobForwardCmd(g))
	return cmd
}

// jobRunFlags are the flags of `job run`: the job's spec, and how to run
// and follow it.
type jobRunFlags struct {
	local, detach   bool
	gpus            int
	inputs, outputs []string
	env             []string
	name, timeout   string
	gpuClass, price string
	cpu             float64
	memory          uint64
	publish         []string
	readyHTTP       string
	nodes, procs    int
	minNodes        int
	maxRestarts     int
	framework       string
	relay           string
	verified        bool
	replicas        int
	holdback        string
	prepay          string
}

func newJobRunCmd(g *globals) *cobra.Command {
	var fl jobRunFlags
	cmd := &cobra.Command{
		Use:   "run [--local] [flags] IMAGE [-- ARGS...]",
		Short: "Run IMAGE as a job and follow its output",
		Long: `Run IMAGE as a job through the market (a provider is found, a deal signed,
the payment channel funded, the GPU time paid by vouchers as it runs), or
on this node with --local (providers use it to check their set-up), and
follow its output until it ends; the exit status is the job's.
ARGS after -- go to the image's entrypoint. --input CID:PATH mounts content
read-only under /inputs; files the job writes under /outputs come back as
the job's result CID.
-p [HOST:]LOCAL:PORT (repeatable) runs the image as a service (until
canceled, restarted on a crash) and publishes its PORT on LOCAL of this
machine (HOST defaults to 127.0.0.1), as docker run -p does: connections
travel over libp2p to the provider, which publishes nothing itself.
--nodes N runs N node ranks on N providers' GPUs (a deal each, all started
together) on the job's private network: rank r is 10.77.0.(r+1), and every
rank gets the launcher contract (MASTER_ADDR, MASTER_PORT, WORLD_SIZE,
RANK, NODE_RANK, PET_* for torchrun, TF_CONFIG for TensorFlow).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, pubs, err := fl.spec(args)
			if err != nil {
				return err
			}
			return submitAndFollowPublish(cmd, g, api.SubmitRequest{Spec: spec, Local: fl.local, Prepay: fl.prepay}, fl.detach, pubs)
		},
	}
	fl.register(cmd.Flags())
	return cmd
}

func (fl *jobRunFlags) register(f *pflag.FlagSet) {
	f.StringArrayVarP(&fl.publish, "publish", "p", nil, "[HOST:]LOCAL:PORT: run as a service and publish its PORT on LOCAL here (repeatable)")
	f.StringVar(&fl.readyHTTP, "ready-http", "", "a service is ready once GET PATH on its first port answers 2xx (e.g. /healthz)")
	f.BoolVar(&fl.local, "local", false, "run on this node, without the market")
	f.StringVar(&fl.prepay, "prepay", "", "how far this market job's vouchers may run ahead of its run, e.g. 2h for a long job from a laptop that may sleep (default: market.prepay)")
	f.IntVar(&fl.nodes, "nodes", 0, "node ranks of a distributed job, one deal each (they meet on the job's private network)")
	f.IntVar(&fl.procs, "procs-per-node", 0, "processes per node rank (torchrun's --nproc-per-node; default 1)")
	f.StringVar(&fl.framework, "framework", "", "pytorch, tensorflow or none: the launcher contract the ranks read (TF_CONFIG for tensorflow)")
	f.IntVar(&fl.minNodes, "min-nodes", 0, "make a distributed job elastic: a lost rank restarts the others while this many remain, and a replacement grows it back")
	f.IntVar(&fl.maxRestarts, "max-restarts", 0, "an elastic job's restarts for lost or failed ranks (default 3)")
	f.StringVar(&fl.relay, "relay", "", "allow (default) or deny ranks whose providers reach each other only through a relay")
	f.IntVar(&fl.replicas, "replicas", 0, "run on K providers (2 to 5) and keep the result a majority returns (spec: verify: {replicas: K})")
	f.StringVar(&fl.holdback, "holdback", "", "with --replicas: the share of each run's pay (e.g. 20%) paid only once its result agrees with the majority's (spec: verify: {holdback: 20%})")
	f.BoolVar(&fl.verified, "verified", false, "deal only with providers verified by proof of GPU (spec: require: {verified: true}); unverified ones are challenged first")
	f.BoolVarP(&fl.detach, "detach", "d", false, "print the job ID and return")
	f.StringVar(&fl.gpuClass, "gpu-class", "", "GPU class, e.g. nvidia-h100-80gb (market jobs)")
	f.StringVar(&fl.price, "max-price", "", "most to pay per GPU-hour, in whole units of the token (market jobs)")
	f.IntVar(&fl.gpus, "gpus", 0, "GPUs")
	f.StringArrayVar(&fl.inputs, "input", nil, "CID:/inputs/PATH to mount read-only (repeatable)")
	f.StringArrayVar(&fl.outputs, "output", nil, "/outputs/PATH the job writes (repeatable; all of /outputs comes back)")
	f.StringArrayVarP(&fl.env, "env", "e", nil, "KEY=VALUE (repeatable)")
	f.StringVar(&fl.name, "name", "", "job name")
	f.StringVar(&fl.timeout, "timeout", "", "execution timeout, e.g. 10m (default 1h)")
	f.Float64Var(&fl.cpu, "cpu", 0, "CPU cores (default 1)")
	f.Uint64Var(&fl.memory, "memory-mib", 0, "memory limit (default 2048)")
}

// spec is the job the flags and IMAGE [ARGS...] describe, and the ports
// to publish here.
func (fl *jobRunFlags) spec(args []string) (*jobs.Spec, []publishSpec, error) {
	spec := &jobs.Spec{Name: fl.name, Image: args[0], Args: args[1:], Outputs: fl.outputs, MaxPrice: fl.price}
	spec.Resources.GPUClass = fl.gpuClass
	spec.Resources.GPUs, spec.Resources.CPU, spec.Resources.MemoryMiB = fl.gpus, fl.cpu, fl.memory
	spec.Timeouts.Execution = fl.timeout
	if fl.verified {
		spec.Require = &jobs.Require{Verified: true}
	}
	if fl.replicas != 0 {
		spec.Verify = &jobs.Verify{Replicas: fl.replicas, Holdback: fl.holdback}
	} else if fl.holdback != "" {
		return nil, nil, errors.New("--holdback holds pay back until the result verifies: give --replicas K too (or a spec with verify: {sample: 5%, holdback: 20%})")
	}
	if err := fl.inputsAndEnv(spec); err != nil {
		return nil, nil, err
	}
	if fl.nodes > 1 || fl.procs > 0 || fl.framework != "" || fl.relay != "" || fl.minNodes > 0 || fl.maxRestarts > 0 {
		if fl.nodes < 1 {
			return nil, nil, errors.New("--procs-per-node, --framework, --relay, --min-nodes and --max-restarts are for a distributed job: give --nodes N too")
		}
		spec.Distributed = &jobs.Distributed{Nodes: fl.nodes, ProcsPerNode: fl.procs, Framework: fl.framework, Relay: fl.relay,
			MinNodes: fl.minNodes, MaxRestarts: fl.maxRestarts}
	}
	pubs, err := fl.service(spec)
	if err != nil {
		return nil, nil, err
	}
	return spec, pubs, nil
}

// inputsAndEnv reads the --input CID:PATH and --env KEY=VALUE flags into
// the spec.
func (fl *jobRunFlags) inputsAndEnv(spec *jobs.Spec) error {
	for _, in := range fl.inputs {
		c, p, ok := strings.Cut(in, ":")
		if !ok {
			return fmt.Errorf("input %q: want CID:/inputs/PATH", in)
		}
		spec.Inputs = append(spec.Inputs, jobs.Input{CID: c, Path: p})
	}
	for _, e := range fl.env {
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			return fmt.Errorf("env %q: want KEY=VALUE", e)
		}
		if spec.Env == nil {
			spec.Env = map[string]string{}
		}
		spec.Env[k] = v
	}
	return nil
}

// service makes the spec a service when -p publishes its ports, and
// returns what to publish.
func (fl *jobRunFlags) service(spec *jobs.Spec) ([]publishSpec, error) {
	pubs, err := parsePublish(fl.publish)
	if err != nil {
		return nil, err
	}
	if len(pubs) == 0 {
		if fl.readyHTTP != "" {
			return nil, errors.New("--ready-http: only for a service (give -p)")
		}
		return nil, nil
	}
	if fl.local {
		return nil, errors.New("-p: a job with --local runs on this node: reach its port through the provider's own forward; -p publishes a market job's port here")
	}
	spec.Kind = "service"
	for _, p := range pubs {
		if !spec.HasPort(p.port) {
			spec.Ports = append(spec.Ports, jobs.Port{Port: p.port})
		}
	}
	if fl.readyHTTP != "" {
		spec.Ready = &jobs.Ready{HTTP: fl.readyHTTP}
	}
	return pubs, nil
}

func newJobSubmitCmd(g *globals) *cobra.Command {
	var local bool
	cmd := &cobra.Command{
		Use:   "submit FILE.yaml|- [--local]",
		Short: "Submit a job spec (- reads it from stdin); prints the job ID",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var b []byte
			var err error
			if args[0] == "-" {
				b, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
			} else {
				b, err = os.ReadFile(args[0])
			}
			if err != nil {
				return fmt.Errorf("read spec: %w", err)
			}
			if _, err := jobs.ParseSpec(b); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			return submitAndFollow(cmd, g, api.SubmitRequest{SpecYAML: string(b), Local: local}, true)
		},
	}
	cmd.Flags().BoolVar(&local, "local", false, "run on this node, without the market")
	return cmd
}

// errJobFailed carries a failed job's exit status to main.
type errJobFailed struct {
	j *api.Job
}

func (e errJobFailed) Error() string {
	return fmt.Sprintf("job %s %s: %s", e.j.ID, e.j.State, e.j.Reason)
}

func submitAndFollow(cmd *cobra.Command, g *globals, req api.SubmitRequest, detach bool) error {
	return submitAndFollowPublish(cmd, g, req, detach, nil)
}

func submitAndFollowPublish(cmd *cobra.Command, g *globals, req api.SubmitRequest, detach bool, pubs []publishSpec) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	j, err := c.SubmitJob(cmd.Context(), req)
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	if len(pubs) > 0 {
		fws, err := publishPorts(cmd.Context(), c, j, pubs, stderr, g.json)
		if err != nil {
			return err
		}
		if detach {
			res := struct {
				*api.Job
				Forwards []api.ForwardInfo `json:"forwards"`
			}{j, fws}
			return g.print(cmd.OutOrStdout(), res, func(w io.Writer) { fmt.Fprintln(w, j.ID) })
		}
	}
	if detach {
		return g.print(cmd.OutOrStdout(), j, func(w io.Writer) { fmt.Fprintln(w, j.ID) })
	}
	if !g.json {
		fmt.Fprintf(stderr, "job %s\n", j.ID)
	}
	// Ctrl-C leaves the job running (and paying): say so, and let a second
	// Ctrl-C cancel it.
	ctx, interrupted := interruptible(cmd, stderr, c, j.ID)
	defer interrupted.stop()
	if err := waitQueued(ctx, c, j, stderr, g.json); err != nil {
		return interrupted.or(err)
	}
	if !g.json {
		if err := c.JobLogs(ctx, j.ID, true, cmd.OutOrStdout()); err != nil {
			return interrupted.or(err)
		}
	}
	for {
		if j, err = c.Job(ctx, j.ID); err != nil {
			return interrupted.or(err)
		}
		if j.State.Terminal() {
			// A market job whose provider vanished may go on elsewhere.
			if _, next, ok := strings.Cut(j.Reason, "retried as "); ok {
				fmt.Fprintf(stderr, "job %s %s: %s\n", j.ID, j.State, j.Reason)
				j.ID = strings.Fields(next)[0]
				if !g.json {
					c.JobLogs(ctx, j.ID, true, cmd.OutOrStdout())
				}
				continue
			}
			break
		}
		select {
		case <-ctx.Done():
			return interrupted.or(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if g.json {
		// The job's record, with its output: a script that asked for JSON
		// still gets what the job printed.
		var out strings.Builder
		if err := c.JobLogs(cmd.Context(), j.ID, false, &out); err != nil {
			return err
		}
		res := struct {
			*api.Job
			Output string `json:"output"`
		}{j, out.String()}
		if err := g.print(cmd.OutOrStdout(), res, nil); err != nil {
			return err
		}
	} else if j.ResultCID != "" {
		fmt.Fprintf(stderr, "job %s %s; result %s\n", j.ID, j.State, j.ResultCID)
	}
	if j.State != "completed" {
		return errJobFailed{j}
	}
	return nil
}

// waitQueued prints why a market job waits for a provider, each time the
// reason changes, until it leaves the queue.
func waitQueued(ctx context.Context, c *api.Client, j *api.Job, w io.Writer, quiet bool) error {
	last := ""
	for j.State == "queued" || j.State == "pending" {
		if j.State == "queued" && j.Reason != last && !quiet {
			fmt.Fprintf(w, "queued: %s\n", j.Reason)
			last = j.Reason
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		var err error
		if j, err = c.Job(ctx, j.ID); err != nil {
			return err
		}
	}
	return nil
}

// interrupt follows a job run's Ctrl-C: the first detaches (the job goes
// on), a second within a few seconds cancels the job.
type interrupt struct {
	stop func()
	msg  chan error
}

// or is the error to return when ctx ended: the interrupt's, if there was
// one, else err.
func (i interrupt) or(err error) error {
	select {
	case e := <-i.msg:
		return e
	default:
		return err
	}
}

func interruptible(cmd *cobra.Command, w io.Writer, c *api.Client, id string) (context.Context, interrupt) {
	ctx, cancel := context.WithCancel(cmd.Context())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	it := interrupt{msg: make(chan error, 1)}
	done := make(chan struct{})
	it.stop = func() {
		signal.Stop(sigs)
		cancel()
		select {
		case <-done:
		default:
			close(done)
		}
	}
	go func() {
		select {
		case <-sigs:
		case <-done:
			return
		}
		fmt.Fprintf(w, "\ndetached: job %s keeps running and paying. Ctrl-C again within 3s cancels it; later: aixblock job cancel %s\n", id, id)
		cancel()
		select {
		case <-sigs:
			cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer ccancel()
			if _, err := c.CancelJob(cctx, id); err != nil {
				it.msg <- fmt.Errorf("cancel job %s: %w", id, err)
				return
			}
			it.msg <- errInterrupted{fmt.Sprintf("job %s canceled", id)}
		case <-time.After(3 * time.Second):
			it.msg <- errInterrupted{fmt.Sprintf("detached from job %s; it is still running (aixblock job logs -f %s)", id, id)}
		case <-done:
		}
	}()
	return ctx, it
}

// errInterrupted ends a job run that the user interrupted; it exits 130 as
// shells do for SIGINT.
type errInterrupted struct{ msg string }

func (e errInterrupted) Error() string { return e.msg }

func newJobStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status ID",
		Short: "A job's state, reason, exit code and result CID",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			j, err := c.Job(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			// A market job's money, in token units (local jobs cost nothing).
			var cost *api.JobCost
			if j.Provider != "" {
				cost, _ = c.JobCost(cmd.Context(), j.ID)
			}
			var fws []api.ForwardInfo
			if j.Spec.IsService() {
				fws, _ = c.Forwards(cmd.Context(), j.ID)
			}
			view := struct {
				*api.Job
				Cost     *api.JobCost      `json:"cost,omitempty"`
				Forwards []api.ForwardInfo `json:"forwards,omitempty"`
			}{j, cost, fws}
			return g.print(cmd.OutOrStdout(), view, func(w io.Writer) {
				kv(w, "id", j.ID)
				kv(w, "name", j.Spec.Name)
				kv(w, "image", j.Spec.Image)
				kv(w, "state", j.State)
				if j.Provider != "" {
					kv(w, "provider", j.Provider)
				}
				if j.Reason != "" {
					kv(w, "reason", j.Reason)
				}
				if j.Spec.IsService() {
					var ports []string
					for _, p := range j.Spec.Ports {
						ports = append(ports, strconv.Itoa(p.Port))
					}
					kv(w, "ports", strings.Join(ports, ", "))
					kv(w, "ready", j.Ready)
					if j.Restarts > 0 {
						kv(w, "restarts", j.Restarts)
					}
					for _, f := range fws {
						kv(w, "forward", fmt.Sprintf("%s -> port %d", f.Local, f.Port))
					}
				}
				if n := j.Network; n != nil {
					kv(w, "network", n.Addr+" (the job's private network)")
					for _, p := range n.Peers {
						kv(w, fmt.Sprintf("  rank %d", p.Rank), fmt.Sprintf("%s, sent %s, received %s", pathOrNone(p.Path), mib(float64(p.TxBytes)), mib(float64(p.RxBytes))))
					}
				}
				if j.GangStartMs > 0 {
					kv(w, "gang start", fmt.Sprintf("%d ms", j.GangStartMs))
				}
				placementHuman(w, j.Placement)
				if j.CheckpointCID != "" && j.CheckpointAt != nil {
					kv(w, "checkpoint", fmt.Sprintf("%s (at %s)", j.CheckpointCID, j.CheckpointAt.Format(time.RFC3339)))
				}
				for _, e := range j.Events {
					kv(w, "event", fmt.Sprintf("%s generation %d: %s", e.At.Format(time.RFC3339), e.Generation, e.Text))
				}
				verificationHuman(w, j)
				if j.ExitCode != nil {
					kv(w, "exit_code", *j.ExitCode)
				}
				if j.ResultCID != "" {
					kv(w, "result_cid", j.ResultCID)
				}
				if cost != nil && len(cost.Ranks) > 0 {
					r := cost.Ranks[0]
					kv(w, "price", fmt.Sprintf("%s %s per GPU-hour × %d GPUs", r.PriceUnits, cost.Symbol, max(r.GPUs, 1)))
					kv(w, "cost so far", cost.CostUnits+" "+cost.Symbol)
					kv(w, "paid (vouched)", cost.PaidUnits+" "+cost.Symbol)
					kv(w, "at most", cost.MaxCostUnits+" "+cost.Symbol)
				}
				for _, h := range j.History {
					kv(w, "at "+h.At.Format(time.RFC3339), string(h.State)+" "+h.Reason)
				}
			})
		},
	}
}

func newJobLogsCmd(g *globals) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs [-f] ID",
		Short: "A job's output (stdout and stderr); -f follows it live",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return c.JobLogs(cmd.Context(), args[0], follow, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow until the job ends")
	return cmd
}

func newJobListCmd(g *globals) *cobra.Command {
	var quiet bool
	var state string
	cmd := &cobra.Command{
		Use:   "list [-q] [--state STATE]",
		Short: "Jobs on this node, newest first (ranks of a distributed job under it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if state != "" && !slices.Contains(jobStates, state) {
				return fmt.Errorf("--state %q: want one of %s", state, strings.Join(jobStates, ", "))
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			all, err := c.Jobs(cmd.Context())
			if err != nil {
				return err
			}
			js := []api.JobListEntry{}
			for _, j := range all {
				if state == "" || string(j.State) == state {
					js = append(js, j)
				}
			}
			if quiet && !g.json {
				for _, j := range js {
					if j.GroupOf == "" {
						fmt.Fprintln(cmd.OutOrStdout(), j.ID)
					}
				}
				return nil
			}
			return g.print(cmd.OutOrStdout(), js, func(w io.Writer) {
				if len(js) == 0 {
					fmt.Fprintln(w, "no jobs")
					return
				}
				fmt.Fprintln(w, "ID\tNAME\tIMAGE\tSTATE\tEXIT\tCREATED")
				for _, j := range js {
					exit := "-"
					if j.ExitCode != nil {
						exit = fmt.Sprint(*j.ExitCode)
					}
					id := j.ID
					if j.GroupOf != "" {
						id = fmt.Sprintf("  rank %d: %s", *j.Rank, j.ID)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", id, j.Spec.Name, j.Spec.Image, j.State, exit, j.CreatedAt.Format(time.RFC3339))
				}
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the job IDs")
	cmd.Flags().StringVar(&state, "state", "", "only jobs in this state ("+strings.Join(jobStates, ", ")+")")
	return cmd
}

// jobStates are the states --state accepts.
var jobStates = []string{"queued", "pending", "preparing", "running", "uploading", "completed", "failed", "canceled", "timed_out", "unknown"}

func newJobCancelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Stop a job: SIGTERM, then SIGKILL after a grace period",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			j, err := c.CancelJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), j, func(w io.Writer) { kv(w, "canceling", j.ID) })
		},
	}
}

func newJobResultsCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "results ID [-o DIR]",
		Short: "Fetch a job's result CID (its /outputs) into DIR (default ./ID)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			j, err := c.Job(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if j.ResultCID == "" {
				return fmt.Errorf("job %s has no result (it is %s)", j.ID, j.State)
			}
			if out == "" {
				out = j.ID
			}
			// An existing empty directory is a fine target (mkdir first, as
			// with cp -r); one with files in it would be mixed with the result.
			if ents, err := os.ReadDir(out); err == nil {
				if len(ents) > 0 {
					return fmt.Errorf("-o %s: the directory is not empty; give a new or empty one", out)
				}
				if err := os.Remove(out); err != nil {
					return fmt.Errorf("-o %s: %w", out, err)
				}
			}
			abs, err := filepath.Abs(out)
			if err != nil {
				return err
			}
			ev, err := c.Get(cmd.Context(), api.GetRequest{CID: j.ResultCID, Output: abs}, nil)
			if err != nil {
				return err
			}
			res := struct {
				ID        string `json:"id"`
				ResultCID string `json:"result_cid"`
				Output    string `json:"output"`
				Bytes     int64  `json:"bytes"`
			}{j.ID, j.ResultCID, abs, ev.Bytes}
			return g.print(cmd.OutOrStdout(), res, func(w io.Writer) {
				kv(w, "result_cid", res.ResultCID)
				kv(w, "written to", res.Output)
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "directory (or file) to write the result to; new or empty (default ./ID)")
	return cmd
}

// pathOrNone names a rank's path, or its absence.
func pathOrNone(s string) string {
	if s == "" {
		return "not connected"
	}
	return s
}

// verificationHuman is how a checked job's runs came out, in job status.
func verificationHuman(w io.Writer, j *api.Job) {
	v := j.Verification
	if v == nil {
		return
	}
	what := v.Mode
	if v.Mode == "sample" && !v.Checked && v.State.Terminal() {
		what += ": not drawn for a check"
	} else if v.Reason != "" {
		what += ": " + v.Reason
	}
	if v.JobID != j.ID {
		what += " (checked job " + v.JobID + ")"
	}
	kv(w, "verification", what)
	for _, r := range v.Runs {
		res := r.ResultCID
		if res == "" {
			res = "no result"
		}
		outcome := r.Outcome
		if r.Holdback != "" {
			outcome += "; holdback " + r.Holdback
		}
		kv(w, "  "+r.Role, fmt.Sprintf("%s on %s: %s, %s (%s)", r.JobID, orNone(r.Provider), r.State, res, outcome))
	}
	for _, c := range v.Comparisons {
		said := "different"
		switch {
		case c.Error != "":
			said = "no answer (" + c.Error + "): counted as different"
		case c.Equivalent:
			said = "equivalent"
		}
		kv(w, "  comparator", fmt.Sprintf("%s vs %s: %s, took %s", c.A, c.B, said, (time.Duration(c.WallMs)*time.Millisecond).Round(time.Millisecond)))
	}
}

// placementHuman is how a distributed job's providers were chosen, and
// each pair of bidders as measured.
func placementHuman(w io.Writer, p *api.Placement) {
	if p == nil {
		return
	}
	kv(w, "placement", p.Note)
	for _, r := range p.Pairs {
		rtt := "no round trip"
		if r.RTTMs > 0 {
			rtt = fmt.Sprintf("%.1f ms round trip", r.RTTMs)
		}
		kv(w, "  "+shortPeer(r.A)+" – "+shortPeer(r.B), r.Path+", "+rtt)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none yet"
	}
	return s
}
