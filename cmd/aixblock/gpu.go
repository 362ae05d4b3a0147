package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/aixblock/aixblock/gpu"
	"github.com/spf13/cobra"
)

func newGPUCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gpu",
		Short: "GPU inventory, health and fault injection",
	}
	cmd.AddCommand(newGPUListCmd(g), newGPUHealthCmd(g), newGPUInjectCmd(g), newGPUResetCmd(g), newGPUCheckCmd(g))
	return cmd
}

func newGPUCheckCmd(g *globals) *cobra.Command {
	var mock string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Read the GPUs and run one health pass here, without a daemon",
		Long: `Read the GPUs through NVML (or --gpu-mock) and run one health pass, in this
process: a check of a machine's cards before it serves. Needs no repo or daemon.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The GPUs as the daemon would open them (real NVML unless
			// --gpu-mock), one health poll, no daemon.
			m, err := gpu.New(gpu.Config{Mock: mock, DiskPath: "."})
			if err != nil {
				return err
			}
			m.PollOnce()
			inv := m.Inventory()
			return g.print(cmd.OutOrStdout(), inv, func(w io.Writer) {
				fmt.Fprintf(w, "source\t%s\n", inv.Source)
				if inv.Reason != "" {
					fmt.Fprintf(w, "reason\t%s\n", inv.Reason)
				}
				fmt.Fprintf(w, "driver\t%s\ncuda\t%s\n", inv.DriverVersion, inv.CUDAVersion)
				fmt.Fprintf(w, "host\t%s, %d cores, %d MiB memory, %d MiB free disk\n",
					inv.Host.CPUModel, inv.Host.CPUCores, inv.Host.MemoryMiB, inv.Host.DiskFreeMiB)
				for _, x := range inv.GPUs {
					fmt.Fprintf(w, "gpu %d\t%s %s (%s), %d/%d MiB free, cc %s, bus %s, %.0f W, persistence %v, MIG %v: %s %s\n",
						x.Index, x.UUID, x.Name, x.Class, x.FreeMemoryMiB, x.MemoryMiB, x.ComputeCapability,
						x.PCIBusID, x.PowerLimitW, x.PersistenceMode, x.MIGMode, x.Health, x.Reason)
				}
			})
		},
	}
	cmd.Flags().StringVar(&mock, "gpu-mock", "", "check a mock GPU server instead of NVML")
	return cmd
}

func fetchGPUs(cmd *cobra.Command, g *globals) (gpu.Inventory, error) {
	c, err := g.client()
	if err != nil {
		return gpu.Inventory{}, err
	}
	return c.GPUs(cmd.Context())
}

func newGPUListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the node's GPUs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, err := fetchGPUs(cmd, g)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), inv.GPUs, func(w io.Writer) {
				if len(inv.GPUs) == 0 {
					fmt.Fprintf(w, "no GPUs: %s\n", inv.Reason)
					return
				}
				fmt.Fprintln(w, "INDEX\tUUID\tNAME\tCLASS\tMEMORY\tFREE\tCC\tHEALTH")
				for _, x := range inv.GPUs {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d MiB\t%d MiB\t%s\t%s\n",
						x.Index, x.UUID, x.Name, x.Class, x.MemoryMiB, x.FreeMemoryMiB, x.ComputeCapability, x.Health)
				}
				fmt.Fprintf(w, "\nsource %s, driver %s, CUDA %s\n", inv.Source, inv.DriverVersion, inv.CUDAVersion)
			})
		},
	}
}

// healthRow is what `gpu health` prints per GPU.
type healthRow struct {
	Index  int    `json:"index"`
	UUID   string `json:"uuid"`
	Health string `json:"health"`
	Reason string `json:"reason,omitempty"`
	Since  string `json:"since,omitempty"`
}

func newGPUHealthCmd(g *globals) *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Show each GPU's health and why; --watch follows changes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			inv, err := c.GPUs(cmd.Context())
			if err != nil {
				return err
			}
			rows := []healthRow{}
			for _, x := range inv.GPUs {
				rows = append(rows, healthRow{x.Index, x.UUID, string(x.Health), x.Reason, x.Since})
			}
			out := cmd.OutOrStdout()
			if !watch || !g.json {
				err = g.print(out, rows, func(w io.Writer) {
					if len(rows) == 0 {
						fmt.Fprintf(w, "no GPUs: %s\n", inv.Reason)
						return
					}
					fmt.Fprintln(w, "INDEX\tUUID\tHEALTH\tSINCE\tREASON")
					for _, r := range rows {
						fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", r.Index, r.UUID, r.Health, r.Since, r.Reason)
					}
				})
				if err != nil || !watch {
					return err
				}
			}
			// --watch: one line per change (a JSON object per line with --json).
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			enc := json.NewEncoder(out)
			return c.WatchGPUs(ctx, func(ch gpu.Change) error {
				if g.json {
					return enc.Encode(ch)
				}
				_, err := fmt.Fprintf(out, "%s gpu %d %s: %s -> %s: %s\n",
					ch.At.Format("15:04:05"), ch.Index, ch.UUID, ch.From, ch.To, ch.Reason)
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&watch, "watch", false, "keep running and print every health change (JSON lines with --json)")
	return cmd
}

func newGPUInjectCmd(g *globals) *cobra.Command {
	var (
		index int
		xid   uint64
		kind  string
		temp  uint32
	)
	cmd := &cobra.Command{
		Use:   "inject --gpu INDEX (--xid N | --fault KIND)",
		Short: "Inject a fault into a mock GPU (refused on real ones)",
		Example: `  aixblock gpu inject --gpu 3 --xid 79
  aixblock gpu inject --gpu 1 --fault thermal
  aixblock gpu inject --gpu 1 --fault temperature --temperature 95
  aixblock gpu inject --gpu 1 --fault clear`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if !f.Changed("gpu") {
				return errors.New("--gpu INDEX is required")
			}
			switch {
			case f.Changed("xid") && f.Changed("fault"):
				return errors.New("give --xid or --fault, not both")
			case f.Changed("xid"):
				kind = "xid"
			case !f.Changed("fault"):
				return fmt.Errorf("give --xid N or --fault KIND (one of %s)", strings.Join(gpu.FaultKinds, ", "))
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			fault := gpu.Fault{Kind: kind, XID: xid, Temperature: temp}
			if err := c.InjectFault(cmd.Context(), index, fault); err != nil {
				return err
			}
			out := struct {
				Index int       `json:"index"`
				Fault gpu.Fault `json:"fault"`
			}{index, fault}
			return g.print(cmd.OutOrStdout(), out, func(w io.Writer) {
				fmt.Fprintf(w, "injected %s into gpu %d\n", describeFault(fault), index)
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&index, "gpu", 0, "GPU index")
	f.Uint64Var(&xid, "xid", 0, "inject this XID critical error")
	f.StringVar(&kind, "fault", "", "fault kind: "+strings.Join(gpu.FaultKinds, ", "))
	f.Uint32Var(&temp, "temperature", 0, "temperature in °C for --fault temperature (default 3 over the slowdown threshold)")
	return cmd
}

func describeFault(f gpu.Fault) string {
	if f.Kind == "xid" {
		return fmt.Sprintf("XID %d", f.XID)
	}
	return f.Kind
}

func newGPUResetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reset-health INDEX|UUID",
		Short: "Clear a GPU's health state after fixing it (by index, as gpu inject, or UUID); a fault still present shows again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			uuid := args[0]
			if i, err := strconv.Atoi(uuid); err == nil {
				inv, err := c.GPUs(cmd.Context())
				if err != nil {
					return err
				}
				uuid = ""
				for _, x := range inv.GPUs {
					if x.Index == i {
						uuid = x.UUID
					}
				}
				if uuid == "" {
					return fmt.Errorf("gpu index %d: this node has %d GPUs (see gpu list)", i, len(inv.GPUs))
				}
			}
			x, err := c.ResetHealth(cmd.Context(), uuid)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), x, func(w io.Writer) {
				fmt.Fprintf(w, "gpu %d %s is %s (%s)\n", x.Index, x.UUID, x.Health, x.Reason)
			})
		},
	}
}
