package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aixblock/aixblock/node/api"
	"github.com/spf13/cobra"
)

func newDataCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data",
		Short: "Content by hash: add, get, pin and move data over IPFS",
	}
	cmd.AddCommand(newDataAddCmd(g), newDataGetCmd(g), newDataCatCmd(g), newDataLsCmd(g),
		newDataPinCmd(g), newDataExportCmd(g), newDataImportCmd(g), newDataGCCmd(g))
	return cmd
}

func newDataAddCmd(g *globals) *cobra.Command {
	var (
		req        api.AddRequest
		cidVersion int
		rawLeaves  bool
		quiet      bool
	)
	cmd := &cobra.Command{
		Use:   "add PATH",
		Short: "Add a file or directory; prints its root CID",
		Long: `Add a file or directory tree. Defaults: CIDv1, raw leaves, 1 MiB chunks.
--cid-version 0 --chunker size-262144 gives the CIDs of Kubo's ipfs add defaults.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			abs, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			total, err := treeSize(abs)
			if err != nil {
				return err
			}
			req.Path = abs
			if cmd.Flags().Changed("cid-version") {
				req.CIDVersion = &cidVersion
			}
			if cmd.Flags().Changed("raw-leaves") {
				req.RawLeaves = &rawLeaves
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			bar := newProgress("add", total, quiet)
			ev, err := c.Add(cmd.Context(), req, func(e api.DataEvent) { bar.set(e.Bytes) })
			bar.done(err == nil)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), map[string]string{"cid": ev.CID}, func(w io.Writer) {
				fmt.Fprintln(w, ev.CID)
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&req.Pin, "pin", false, "pin the root recursively")
	f.IntVar(&cidVersion, "cid-version", 1, "CID version, 0 or 1")
	f.BoolVar(&rawLeaves, "raw-leaves", true, "store file data as raw blocks (default true for CIDv1, false for CIDv0)")
	f.StringVar(&req.Chunker, "chunker", "size-1048576", "chunker: size-BYTES or rabin-MIN-AVG-MAX")
	f.BoolVar(&req.Hidden, "hidden", false, "include files whose names start with a dot")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	return cmd
}

// treeSize is the bytes an add will read, for the progress bar.
func treeSize(path string) (int64, error) {
	var total int64
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("add: %w", err)
	}
	return total, nil
}

func newDataGetCmd(g *globals) *cobra.Command {
	var (
		out   string
		quiet bool
	)
	cmd := &cobra.Command{
		Use:   "get CID",
		Short: "Fetch a file or directory by CID; an interrupted get resumes",
		Long: `Fetch a file or directory by CID. The daemon writes -o itself, so the
bytes do not travel back over the API; the directory must be writable by
the daemon's user. Progress shows the total, rate, ETA and how many peers
blocks come from.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				out = args[0]
			}
			abs, err := filepath.Abs(out)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			bar := newProgress("get", 0, quiet)
			ev, err := c.Get(cmd.Context(), api.GetRequest{CID: args[0], Output: abs}, func(e api.DataEvent) {
				bar.total = e.Total
				if e.Peers > 0 {
					short := make([]string, 0, len(e.From))
					for _, p := range e.From {
						short = append(short, shortPeer(p))
					}
					bar.extra = fmt.Sprintf("  from %d peer%s (%s)", e.Peers, plural(e.Peers), strings.Join(short, ", "))
				}
				bar.set(e.Bytes)
			})
			bar.done(err == nil)
			if err != nil {
				return err
			}
			res := struct {
				CID     string   `json:"cid"`
				Output  string   `json:"output"`
				Blocks  int      `json:"blocks"`
				Bytes   int64    `json:"bytes"`
				Fetched int      `json:"fetched"`
				Peers   int      `json:"peers"`
				From    []string `json:"from,omitempty"`
				MiBs    float64  `json:"mib_s"`
			}{ev.CID, abs, ev.Blocks, ev.Bytes, ev.Fetched, ev.Peers, ev.From, ev.MiBs}
			return g.print(cmd.OutOrStdout(), res, func(w io.Writer) {
				fmt.Fprintf(w, "saved %s to %s (%d blocks, %d fetched from %d peer%s, %.0f MiB/s)\n", res.CID, res.Output, res.Blocks, res.Fetched, res.Peers, plural(res.Peers), res.MiBs)
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "where to write (default ./CID); must not exist")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	return cmd
}

func newDataCatCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cat CID",
		Short: "Print a file's bytes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return c.Cat(cmd.Context(), args[0], cmd.OutOrStdout())
		},
	}
}

func newDataLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls [CID]",
		Short: "List a directory's entries, or with no CID the pinned roots",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if len(args) == 0 {
				return printPins(cmd, g, c)
			}
			entries, err := c.Ls(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), entries, func(w io.Writer) {
				for _, e := range entries {
					fmt.Fprintf(w, "%s\t%d\t%s\n", e.CID, e.Size, e.Name)
				}
			})
		},
	}
}

func printPins(cmd *cobra.Command, g *globals, c *api.Client) error {
	pins, err := c.Pins(cmd.Context())
	if err != nil {
		return err
	}
	return g.print(cmd.OutOrStdout(), pins, func(w io.Writer) {
		for _, p := range pins {
			fmt.Fprintln(w, p)
		}
	})
}

func newDataPinCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "pin", Short: "Keep data through gc"}
	pinOp := func(use, short string, op func(c *api.Client, cmd *cobra.Command, cid string) error) *cobra.Command {
		return &cobra.Command{
			Use: use + " CID", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				if err := op(c, cmd, args[0]); err != nil {
					return err
				}
				return g.print(cmd.OutOrStdout(), map[string]string{"cid": args[0]}, func(w io.Writer) {
					fmt.Fprintf(w, "%s %s\n", use, args[0])
				})
			},
		}
	}
	cmd.AddCommand(
		pinOp("add", "Fetch what is missing and pin recursively", func(c *api.Client, cmd *cobra.Command, cid string) error {
			return c.PinAdd(cmd.Context(), cid)
		}),
		pinOp("rm", "Remove a pin (gc then frees the data)", func(c *api.Client, cmd *cobra.Command, cid string) error {
			return c.PinRm(cmd.Context(), cid)
		}),
		&cobra.Command{
			Use: "ls", Short: "List pinned roots", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				return printPins(cmd, g, c)
			},
		},
	)
	return cmd
}

func newDataExportCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "export CID -o FILE.car",
		Short: "Write a DAG as a CAR file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("-o FILE.car is required")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			if err := c.Export(cmd.Context(), args[0], f); err != nil {
				f.Close()
				os.Remove(out) // a partial CAR is worse than none
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), map[string]string{"cid": args[0], "file": out}, func(w io.Writer) {
				fmt.Fprintf(w, "exported %s to %s\n", args[0], out)
			})
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "CAR file to create")
	return cmd
}

func newDataImportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE.car",
		Short: "Import a CAR and pin its roots (only when complete and intact)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("import: %w", err)
			}
			defer f.Close()
			res, err := c.Import(cmd.Context(), f)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), res, func(w io.Writer) {
				for _, r := range res.Roots {
					fmt.Fprintf(w, "pinned %s (%d blocks)\n", r, res.Blocks)
				}
			})
		},
	}
}

func newDataGCCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Remove every block no pin reaches",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.GC(cmd.Context())
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), res, func(w io.Writer) {
				fmt.Fprintf(w, "removed %d blocks (%d bytes), kept %d\n", res.Removed, res.Bytes, res.Kept)
			})
		},
	}
}

// progress draws bytes, total, percent, rate and ETA on stderr when it is
// a terminal.
type progress struct {
	label string
	total int64
	extra string // e.g. the peers a get fetches from
	on    bool
	start time.Time
	last  time.Time
	n     int64
}

func newProgress(label string, total int64, quiet bool) *progress {
	st, err := os.Stderr.Stat()
	on := !quiet && err == nil && st.Mode()&os.ModeCharDevice != 0
	return &progress{label: label, total: total, on: on, start: time.Now()}
}

func (p *progress) set(n int64) {
	p.n = n
	if !p.on || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.draw()
}

func (p *progress) draw() {
	el := time.Since(p.start).Seconds()
	rate := float64(p.n) / max(el, 1e-3)
	line := fmt.Sprintf("%s %s", p.label, mib(float64(p.n)))
	if p.total > 0 {
		line += fmt.Sprintf(" / %s (%.0f%%)", mib(float64(p.total)), 100*float64(p.n)/float64(p.total))
	}
	line += fmt.Sprintf("  %s/s", mib(rate))
	if p.total > 0 && rate > 0 && p.n < p.total {
		line += fmt.Sprintf("  ETA %s", time.Duration(float64(p.total-p.n)/rate*float64(time.Second)).Round(time.Second))
	}
	line += p.extra
	fmt.Fprintf(os.Stderr, "\r\033[K%s", line)
}

func (p *progress) done(ok bool) {
	if !p.on {
		return
	}
	if ok && p.total > 0 {
		p.n = p.total
	}
	p.draw()
	fmt.Fprintln(os.Stderr)
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// shortPeer is a peer ID as people tell them apart: its last 6 characters.
func shortPeer(p string) string {
	if len(p) <= 8 {
		return p
	}
	return "…" + p[len(p)-6:]
}
