package gpu

// DefaultFatalXIDs are the XIDs that make a GPU unhealthy: the classes of
// NVIDIA's XID catalog whose recovery is a GPU reset or a reboot (double-bit
// ECC, the GPU falling off the bus, NVLink and memory faults, GSP and
// contained-error failures). Config.FatalXIDs replaces the list.
var DefaultFatalXIDs = []uint64{
	48,  // double-bit ECC error
	62,  // internal micro-controller halt
	63,  // ECC page retirement or row remapping recording event
	64,  // ECC page retirement or row remapper recording failure
	74,  // NVLink error
	79,  // GPU has fallen off the bus
	92,  // high single-bit ECC error rate
	94,  // contained ECC error (reset to recover the memory)
	95,  // uncontained ECC error
	119, // GSP RPC timeout
	120, // GSP error
	136, // link training failure
	140, // unrecovered ECC error
	143, // GPU initialization failure
	155, // NVLink/C2C failure
	156, // PCIe failure needing a reset
	158, // GPU fatal timeout
}

// DefaultAppXIDs are XIDs that blame the application, not the card: a job
// that causes them fails, the GPU stays healthy. Config.AppXIDs replaces it.
var DefaultAppXIDs = []uint64{
	13, // graphics engine exception (illegal address, bad instruction)
	31, // GPU memory page fault
	43, // GPU stopped processing (the application's context was reset)
	45, // preemptive cleanup after an earlier error
	68, // video processor exception
}

// xidClass says what an XID means for the card.
type xidClass int

const (
	xidUnknown xidClass = iota // neither list: worth a degraded state
	xidFatal
	xidApp
)

type xidTable struct{ fatal, app map[uint64]bool }

func newXIDTable(fatal, app []uint64) xidTable {
	if fatal == nil {
		fatal = DefaultFatalXIDs
	}
	if app == nil {
		app = DefaultAppXIDs
	}
	t := xidTable{fatal: map[uint64]bool{}, app: map[uint64]bool{}}
	for _, x := range fatal {
		t.fatal[x] = true
	}
	for _, x := range app {
		t.app[x] = true
	}
	return t
}

func (t xidTable) classify(xid uint64) xidClass {
	switch {
	case t.fatal[xid]:
		return xidFatal
	case t.app[xid]:
		return xidApp
	}
	return xidUnknown
}
