package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/aixblock/aixblock/node/api"
	"github.com/spf13/cobra"
)

// publishSpec is one -p [HOST:]LOCAL:PORT.
type publishSpec struct {
	listen string // [HOST:]LOCAL, as the daemon takes it
	port   int
}

func parsePublish(args []string) ([]publishSpec, error) {
	var out []publishSpec
	for _, a := range args {
		i := strings.LastIndex(a, ":")
		if i <= 0 {
			return nil, fmt.Errorf("-p %q: want [HOST:]LOCAL:PORT, e.g. 9000:8080 or 127.0.0.1:9000:8080", a)
		}
		port, err := strconv.Atoi(a[i+1:])
		if err != nil || port < 1 || port > 65535 {
			return nil, fmt.Errorf("-p %q: the job's port %q is not a port (1-65535)", a, a[i+1:])
		}
		out = append(out, publishSpec{listen: a[:i], port: port})
	}
	return out, nil
}

// publishPorts waits for a service job to leave the queue (its provider
// found) and asks the daemon to publish each port, printing where.
func publishPorts(ctx context.Context, c *api.Client, j *api.Job, pubs []publishSpec, w io.Writer, quiet bool) ([]api.ForwardInfo, error) {
	if err := waitQueued(ctx, c, j, w, quiet); err != nil {
		return nil, err
	}
	var out []api.ForwardInfo
	for _, p := range pubs {
		f, err := c.Forward(ctx, j.ID, p.port, p.listen)
		if err != nil {
			return out, fmt.Errorf("-p %s:%d: %w", p.listen, p.port, err)
		}
		if !quiet {
			fmt.Fprintf(w, "published %s -> job %s port %d\n", f.Local, j.ID, f.Port)
		}
		out = append(out, *f)
	}
	return out, nil
}

func newJobForwardCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "forward ID [[HOST:]LOCAL:PORT...]",
		Short: "Publish a running service job's ports on this machine (or list them)",
		Long: `Publish PORT of a service job on LOCAL of this machine (HOST defaults to
127.0.0.1; LOCAL 0 picks a free port), as kubectl port-forward does: the
daemon listens and carries each connection over libp2p to the job's
provider. The forward lasts until the job ends. With only ID, lists the
job's forwards.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			pubs, err := parsePublish(args[1:])
			if err != nil {
				return err
			}
			var fws []api.ForwardInfo
			if len(pubs) == 0 {
				if fws, err = c.Forwards(cmd.Context(), args[0]); err != nil {
					return err
				}
			}
			for _, p := range pubs {
				f, err := c.Forward(cmd.Context(), args[0], p.port, p.listen)
				if err != nil {
					return err
				}
				fws = append(fws, *f)
			}
			return g.print(cmd.OutOrStdout(), fws, func(w io.Writer) {
				if len(fws) == 0 {
					fmt.Fprintln(w, "no forwards")
				}
				for _, f := range fws {
					line := fmt.Sprintf("%s -> job %s port %d (%d connections, %d open)", f.Local, f.JobID, f.Port, f.Accepted, f.Open)
					if f.LastError != "" {
						line += "; last error: " + f.LastError
					}
					fmt.Fprintln(w, line)
				}
			})
		},
	}
}
