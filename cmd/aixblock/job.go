package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aixblock/aixblock/node"
	"github.com/spf13/cobra"
)

func newJobCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Run containerized jobs: through the market, or on this node with --local",
	}
	cmd.AddCommand(newJobRunCmd(g), newJobSubmitCmd(g), newJobStatusCmd(g), newJobLogsCmd(g),
		newJobListCmd(g), newJobCancelCmd(g), newJobResultsCmd(g))
	return cmd
}

func newJobRunCmd(g *globals) *cobra.Command {
	var (
		local, detach   bool
		gpus            int
		inputs, outputs []string
		env             []string
		name, timeout   string
		gpuClass, price string
		cpu             float64
		memory          uint64
	)
	cmd := &cobra.Command{
		Use:   "run [--local] [flags] IMAGE [-- ARGS...]",
		Short: "Run IMAGE as a job and follow its output",
		Long: `Run IMAGE as a job through the market (a provider is found, a deal signed,
the payment channel funded, the GPU time paid by vouchers as it runs), or
on this node with --local (providers use it to check their set-up), and
follow its output until it ends; the exit status is the job's.
ARGS after -- go to the image's entrypoint. --input CID:PATH mounts content
read-only under /inputs; files the job writes under /outputs come back as
the job's result CID.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := node.JobSpec{Name: name, Image: args[0], Args: args[1:], Outputs: outputs, MaxPrice: price}
			spec.Resources.GPUClass = gpuClass
			spec.Resources.GPUs, spec.Resources.CPU, spec.Resources.MemoryMiB = gpus, cpu, memory
			spec.Timeouts.Execution = timeout
			for _, in := range inputs {
				c, p, ok := strings.Cut(in, ":")
				if !ok {
					return fmt.Errorf("input %q: want CID:/inputs/PATH", in)
				}
				spec.Inputs = append(spec.Inputs, node.JobInput{CID: c, Path: p})
			}
			for _, e := range env {
				k, v, ok := strings.Cut(e, "=")
				if !ok {
					return fmt.Errorf("env %q: want KEY=VALUE", e)
				}
				if spec.Env == nil {
					spec.Env = map[string]string{}
				}
				spec.Env[k] = v
			}
			return submitAndFollow(cmd, g, node.SubmitRequest{Spec: &spec, Local: local}, detach)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&local, "local", false, "run on this node, without the market")
	f.BoolVarP(&detach, "detach", "d", false, "print the job ID and return")
	f.StringVar(&gpuClass, "gpu-class", "", "GPU class, e.g. nvidia-h100-80gb (market jobs)")
	f.StringVar(&price, "max-price", "", "most to pay per GPU-hour, in whole units of the token (market jobs)")
	f.IntVar(&gpus, "gpus", 0, "GPUs")
	f.StringArrayVar(&inputs, "input", nil, "CID:/inputs/PATH to mount read-only (repeatable)")
	f.StringArrayVar(&outputs, "output", nil, "/outputs/PATH the job writes (repeatable; all of /outputs comes back)")
	f.StringArrayVarP(&env, "env", "e", nil, "KEY=VALUE (repeatable)")
	f.StringVar(&name, "name", "", "job name")
	f.StringVar(&timeout, "timeout", "", "execution timeout, e.g. 10m (default 1h)")
	f.Float64Var(&cpu, "cpu", 0, "CPU cores (default 1)")
	f.Uint64Var(&memory, "memory-mib", 0, "memory limit (default 2048)")
	return cmd
}

func newJobSubmitCmd(g *globals) *cobra.Command {
	var local bool
	cmd := &cobra.Command{
		Use:   "submit FILE.yaml --local",
		Short: "Submit a job spec; prints the job ID",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			if _, err := node.ParseJobSpec(b); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			return submitAndFollow(cmd, g, node.SubmitRequest{SpecYAML: string(b), Local: local}, true)
		},
	}
	cmd.Flags().BoolVar(&local, "local", false, "run on this node, without the market")
	return cmd
}

// errJobFailed carries a failed job's exit status to main.
type errJobFailed struct {
	j *node.Job
}

func (e errJobFailed) Error() string {
	return fmt.Sprintf("job %s %s: %s", e.j.ID, e.j.State, e.j.Reason)
}

func submitAndFollow(cmd *cobra.Command, g *globals, req node.SubmitRequest, detach bool) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	j, err := c.SubmitJob(cmd.Context(), req)
	if err != nil {
		return err
	}
	if detach {
		return g.print(cmd.OutOrStdout(), j, func(w io.Writer) { fmt.Fprintln(w, j.ID) })
	}
	if !g.json {
		fmt.Fprintf(cmd.ErrOrStderr(), "job %s\n", j.ID)
		if err := c.JobLogs(cmd.Context(), j.ID, true, cmd.OutOrStdout()); err != nil {
			return err
		}
	}
	for {
		if j, err = c.Job(cmd.Context(), j.ID); err != nil {
			return err
		}
		if j.State.Terminal() {
			// A market job whose provider vanished may go on elsewhere.
			if _, next, ok := strings.Cut(j.Reason, "retried as "); ok {
				fmt.Fprintf(cmd.ErrOrStderr(), "job %s %s: %s\n", j.ID, j.State, j.Reason)
				j.ID = strings.Fields(next)[0]
				if !g.json {
					c.JobLogs(cmd.Context(), j.ID, true, cmd.OutOrStdout())
				}
				continue
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if g.json {
		if err := g.print(cmd.OutOrStdout(), j, nil); err != nil {
			return err
		}
	} else if j.ResultCID != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "job %s %s; result %s\n", j.ID, j.State, j.ResultCID)
	}
	if j.State != "completed" {
		return errJobFailed{j}
	}
	return nil
}

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
			return g.print(cmd.OutOrStdout(), j, func(w io.Writer) {
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
				if j.ExitCode != nil {
					kv(w, "exit_code", *j.ExitCode)
				}
				if j.ResultCID != "" {
					kv(w, "result_cid", j.ResultCID)
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
	return &cobra.Command{
		Use:   "list",
		Short: "Jobs on this node, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			js, err := c.Jobs(cmd.Context())
			if err != nil {
				return err
			}
			if js == nil {
				js = []*node.Job{}
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
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Spec.Name, j.Spec.Image, j.State, exit, j.CreatedAt.Format(time.RFC3339))
				}
			})
		},
	}
}

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
		Use:   "results ID -o DIR",
		Short: "Fetch a job's result CID (its /outputs) into DIR",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("-o DIR is required")
			}
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
			abs, err := filepath.Abs(out)
			if err != nil {
				return err
			}
			ev, err := c.Get(cmd.Context(), node.GetRequest{CID: j.ResultCID, Output: abs}, nil)
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
	cmd.Flags().StringVarP(&out, "output", "o", "", "directory (or file) to write the result to")
	return cmd
}
