package gpu

import (
	"fmt"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// finding is one observation about a GPU from an event or a poll.
type finding struct {
	state  State // Degraded or Unhealthy; Healthy means "nothing wrong"
	reason string
}

// health is one GPU's state machine.
type health struct {
	state      State
	reason     string
	since      time.Time
	quietUntil time.Time // a degraded GPU recovers after this, if nothing new happens
	sbe        []time.Time
	lastECC    uint64 // uncorrected volatile ECC count at the last poll
	lastReplay int    // PCIe replay counter at the last poll
	seen       bool   // a first poll has set the counters' baselines
}

// apply moves the state for a finding and reports whether it changed.
// Unhealthy sticks; degraded extends its quiet window on every finding.
func (h *health) apply(f finding, now time.Time, quiet time.Duration) bool {
	switch f.state {
	case Unhealthy:
		if h.state == Unhealthy {
			return false
		}
		h.state, h.reason, h.since = Unhealthy, f.reason, now
		return true
	case Degraded:
		if h.state == Unhealthy {
			return false
		}
		h.quietUntil = now.Add(quiet)
		if h.state == Degraded && h.reason == f.reason {
			return false
		}
		h.state, h.reason, h.since = Degraded, f.reason, now
		return true
	}
	return false
}

// settle returns a degraded GPU to healthy once its quiet window passed.
func (h *health) settle(now time.Time, quiet time.Duration) bool {
	if h.state != Degraded || now.Before(h.quietUntil) {
		return false
	}
	h.state, h.reason, h.since = Healthy, fmt.Sprintf("recovered: quiet for %s", quiet), now
	return true
}

// Thresholds a poll compares against.
const (
	// sbeBurst single-bit ECC events within sbeWindow make a GPU degraded.
	sbeBurst  = 10
	sbeWindow = time.Minute
	// pcieReplayBurst replays between two polls make a GPU degraded.
	pcieReplayBurst = 100
)

// Clock event reasons that mean throttling. SW power capping is left out:
// a card at full load sits at its power cap by design.
const (
	thermalReasons = nvml.ClocksEventReasonSwThermalSlowdown | nvml.ClocksThrottleReasonHwThermalSlowdown
	powerReasons   = nvml.ClocksThrottleReasonHwPowerBrakeSlowdown | nvml.ClocksThrottleReasonHwSlowdown
)

// poll reads one GPU's health counters. Readings a card does not support
// are skipped; a lost GPU is the one reading that decides alone.
func (h *health) poll(d nvml.Device) []finding {
	var out []finding
	lost := func(r nvml.Return) bool { return r == nvml.ERROR_GPU_IS_LOST }

	temp, r1 := d.GetTemperature(nvml.TEMPERATURE_GPU)
	if lost(r1) {
		return []finding{{Unhealthy, "GPU has fallen off the bus (NVML: GPU is lost)"}}
	}
	slow, r2 := d.GetTemperatureThreshold(nvml.TEMPERATURE_THRESHOLD_SLOWDOWN)
	if r1 == nvml.SUCCESS && r2 == nvml.SUCCESS && slow > 0 && temp >= slow {
		out = append(out, finding{Degraded, fmt.Sprintf("temperature %d°C at or above the slowdown threshold %d°C", temp, slow)})
	}
	if reasons, r := d.GetCurrentClocksEventReasons(); r == nvml.SUCCESS {
		if reasons&thermalReasons != 0 {
			out = append(out, finding{Degraded, fmt.Sprintf("thermal throttling (clock event reasons %#x)", reasons)})
		}
		if reasons&powerReasons != 0 {
			out = append(out, finding{Degraded, fmt.Sprintf("power throttling (clock event reasons %#x)", reasons)})
		}
	}
	if n, r := d.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC); r == nvml.SUCCESS {
		if n > 0 && (!h.seen || n > h.lastECC) {
			out = append(out, finding{Unhealthy, fmt.Sprintf("%d uncorrected (double-bit) ECC errors since boot", n)})
		}
		h.lastECC = n
	}
	if st, r := d.GetRetiredPagesPendingStatus(); r == nvml.SUCCESS && st == nvml.FEATURE_ENABLED {
		out = append(out, finding{Degraded, "page retirement pending (applies at the next GPU reset)"})
	}
	if _, _, pending, failed, r := d.GetRemappedRows(); r == nvml.SUCCESS {
		if failed {
			out = append(out, finding{Unhealthy, "row remapping failed"})
		} else if pending {
			out = append(out, finding{Degraded, "row remapping pending (applies at the next GPU reset)"})
		}
	}
	if n, r := d.GetPcieReplayCounter(); r == nvml.SUCCESS {
		if h.seen && n-h.lastReplay >= pcieReplayBurst {
			out = append(out, finding{Degraded, fmt.Sprintf("%d PCIe replays since the last poll", n-h.lastReplay)})
		}
		h.lastReplay = n
	}
	h.seen = true
	return out
}

// rebase takes the error counters as they are now as the baseline, so that
// only new errors count.
func (h *health) rebase(d nvml.Device) {
	if n, r := d.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC); r == nvml.SUCCESS {
		h.lastECC = n
	}
	if n, r := d.GetPcieReplayCounter(); r == nvml.SUCCESS {
		h.lastReplay = n
	}
	h.seen = true
}

// event turns one NVML event into a finding; ok is false for events that
// say nothing about the card (an application's XID).
func (h *health) event(e nvml.EventData, xids xidTable, now time.Time) (finding, bool) {
	switch {
	case e.EventType&nvml.EventTypeXidCriticalError != 0:
		switch xids.classify(e.EventData) {
		case xidFatal:
			return finding{Unhealthy, fmt.Sprintf("XID %d (fatal: needs a GPU reset or reboot)", e.EventData)}, true
		case xidApp:
			return finding{}, false
		default:
			return finding{Degraded, fmt.Sprintf("XID %d (not on the fatal or application lists)", e.EventData)}, true
		}
	case e.EventType&nvml.EventTypeDoubleBitEccError != 0:
		return finding{Unhealthy, "double-bit ECC error"}, true
	case e.EventType&nvml.EventTypeSingleBitEccError != 0:
		h.sbe = append(h.sbe, now)
		cut := 0
		for cut < len(h.sbe) && now.Sub(h.sbe[cut]) > sbeWindow {
			cut++
		}
		h.sbe = h.sbe[cut:]
		if len(h.sbe) >= sbeBurst {
			return finding{Degraded, fmt.Sprintf("%d correctable ECC errors within %s", len(h.sbe), sbeWindow)}, true
		}
	}
	return finding{}, false
}
