package gpu

import "time"

// State is a GPU's fitness to rent.
type State string

const (
	Healthy   State = "healthy"   // offered
	Degraded  State = "degraded"  // offered with care; back to healthy after a quiet window
	Unhealthy State = "unhealthy" // withdrawn until reset-health or a restart whose checks pass
)

// GPU is one card as the node sees it.
type GPU struct {
	Index             int     `json:"index"`
	UUID              string  `json:"uuid"`
	Name              string  `json:"name"`
	Class             string  `json:"class"`
	MemoryMiB         uint64  `json:"memory_mib"`
	FreeMemoryMiB     uint64  `json:"free_memory_mib"`
	ComputeCapability string  `json:"compute_capability"`
	PCIBusID          string  `json:"pci_bus_id"`
	PowerLimitW       float64 `json:"power_limit_w"`
	PersistenceMode   bool    `json:"persistence_mode"`
	MIGMode           bool    `json:"mig_mode"`
	Health            State   `json:"health"`
	Reason            string  `json:"reason,omitempty"`
	Since             string  `json:"since,omitempty"`
}

// Host is the machine around the GPUs.
type Host struct {
	CPUModel    string `json:"cpu_model"`
	CPUCores    int    `json:"cpu_cores"`
	MemoryMiB   uint64 `json:"memory_mib"`
	DiskFreeMiB uint64 `json:"disk_free_mib"`
}

// Inventory is everything the node knows about its compute.
type Inventory struct {
	// Source is "nvml", "mock:<name>" or "none" (CPU-only).
	Source        string `json:"source"`
	DriverVersion string `json:"driver_version,omitempty"`
	CUDAVersion   string `json:"cuda_version,omitempty"`
	// Reason says why NVML is unavailable when Source is "none".
	Reason string `json:"reason,omitempty"`
	GPUs   []GPU  `json:"gpus"`
	Host   Host   `json:"host"`
}

// Change is one health transition, as subscribers receive it.
type Change struct {
	Index  int       `json:"index"`
	UUID   string    `json:"uuid"`
	From   State     `json:"from"`
	To     State     `json:"to"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}
