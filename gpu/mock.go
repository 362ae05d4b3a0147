package gpu

import (
	"crypto/sha256"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxb200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

var mockServers = map[string]func() *server.Server{
	"dgxa100": dgxa100.New,
	"dgxh100": dgxh100.New,
	"dgxh200": dgxh200.New,
	"dgxb200": dgxb200.New,
}

// MockNames lists the go-nvml mock servers a node can run on.
func MockNames() []string {
	names := make([]string, 0, len(mockServers))
	for n := range mockServers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ValidateMock checks a mock server name; empty means none.
func ValidateMock(name string) error {
	if name == "" || mockServers[name] != nil {
		return nil
	}
	return fmt.Errorf("gpu-mock %q: want one of %s", name, strings.Join(MockNames(), ", "))
}

// Fault is an injected failure. Kind is one of FaultKinds.
type Fault struct {
	Kind        string `json:"kind"`
	XID         uint64 `json:"xid,omitempty"`
	Temperature uint32 `json:"temperature,omitempty"`
}

// FaultKinds are the faults Inject understands.
var FaultKinds = []string{"xid", "ecc-single", "ecc-double", "temperature", "thermal", "power", "row-remap-failure", "lost", "clear"}

// mockState is what a mock GPU reports to health polls.
type mockState struct {
	temp      uint32
	reasons   uint64
	dbe       uint64
	remapFail bool
	lost      bool
}

// Mock is one of go-nvml's mock servers with what they lack for health
// checks: temperatures, clock event reasons, ECC counters, an event set,
// stable UUIDs, and faults to inject.
type Mock struct {
	*server.Server
	name   string
	events chan nvml.EventData

	mu    sync.Mutex
	state []*mockState
}

const mockSlowdownC = 87

// NewMock starts the named go-nvml mock server. seed makes its UUIDs its
// own (real GPUs' UUIDs are unique; a node passes its peer ID), and stable
// across restarts.
func NewMock(name string, seed ...string) (*Mock, error) {
	newServer := mockServers[name]
	if newServer == nil {
		return nil, ValidateMock(name)
	}
	m := &Mock{Server: newServer(), name: name, events: make(chan nvml.EventData, 64)}
	m.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		return &mock.EventSet{
			WaitFunc: m.wait,
			FreeFunc: func() nvml.Return { return nvml.SUCCESS },
		}, nvml.SUCCESS
	}
	for i, d := range m.Devices {
		dev := d.(*server.Device)
		st := &mockState{temp: 40}
		m.state = append(m.state, st)
		// Stable across restarts, unlike the mock's random ones, so that a
		// job or an operator can name a GPU by UUID.
		sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d%s", name, i, strings.Join(seed, "/"))))
		dev.UUID = fmt.Sprintf("GPU-%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
		dev.MemoryInfo.Free = dev.MemoryInfo.Total
		busID := dev.PciBusID
		dev.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
			p := nvml.PciInfo{PciDeviceId: dev.Config.PciDeviceId, Bus: uint32(i)}
			for j := 0; j < len(busID) && j < len(p.BusId)-1; j++ {
				p.BusId[j] = int8(busID[j])
			}
			return p, nvml.SUCCESS
		}
		dev.GetPowerManagementLimitFunc = func() (uint32, nvml.Return) { return 700_000, nvml.SUCCESS }
		dev.GetPersistenceModeFunc = func() (nvml.EnableState, nvml.Return) { return nvml.FEATURE_ENABLED, nvml.SUCCESS }
		dev.GetSupportedEventTypesFunc = func() (uint64, nvml.Return) {
			return nvml.EventTypeXidCriticalError | nvml.EventTypeSingleBitEccError | nvml.EventTypeDoubleBitEccError, nvml.SUCCESS
		}
		dev.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
		read := func() (mockState, nvml.Return) {
			m.mu.Lock()
			defer m.mu.Unlock()
			if st.lost {
				return *st, nvml.ERROR_GPU_IS_LOST
			}
			return *st, nvml.SUCCESS
		}
		dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) {
			s, r := read()
			return s.temp, r
		}
		dev.GetTemperatureThresholdFunc = func(nvml.TemperatureThresholds) (uint32, nvml.Return) {
			_, r := read()
			return mockSlowdownC, r
		}
		dev.GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) {
			s, r := read()
			return s.reasons, r
		}
		dev.GetTotalEccErrorsFunc = func(nvml.MemoryErrorType, nvml.EccCounterType) (uint64, nvml.Return) {
			s, r := read()
			return s.dbe, r
		}
		dev.GetRetiredPagesPendingStatusFunc = func() (nvml.EnableState, nvml.Return) {
			_, r := read()
			return nvml.FEATURE_DISABLED, r
		}
		dev.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) {
			s, r := read()
			return 0, 0, false, s.remapFail, r
		}
		dev.GetPcieReplayCounterFunc = func() (int, nvml.Return) {
			_, r := read()
			return 0, r
		}
	}
	return m, nil
}

// Name is the mock server's name.
func (m *Mock) Name() string { return m.name }

func (m *Mock) wait(timeoutMs uint32) (nvml.EventData, nvml.Return) {
	select {
	case e := <-m.events:
		return e, nvml.SUCCESS
	case <-time.After(time.Duration(timeoutMs) * time.Millisecond):
		return nvml.EventData{}, nvml.ERROR_TIMEOUT
	}
}

// Inject applies a fault to the GPU at index: XIDs and ECC errors arrive as
// NVML events, the rest change what the next health poll reads.
func (m *Mock) Inject(index int, f Fault) error {
	if index < 0 || index >= len(m.Devices) {
		return fmt.Errorf("gpu %d: this mock has GPUs 0 to %d", index, len(m.Devices)-1)
	}
	dev := m.Devices[index]
	st := m.state[index]
	event := func(t, data uint64) error {
		select {
		case m.events <- nvml.EventData{Device: dev, EventType: t, EventData: data}:
			return nil
		default:
			return fmt.Errorf("gpu %d: event queue full", index)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch f.Kind {
	case "xid":
		if f.XID == 0 {
			return fmt.Errorf("fault xid: give the XID number")
		}
		return event(nvml.EventTypeXidCriticalError, f.XID)
	case "ecc-single":
		return event(nvml.EventTypeSingleBitEccError, 0)
	case "ecc-double":
		st.dbe++
		return event(nvml.EventTypeDoubleBitEccError, 0)
	case "temperature":
		if f.Temperature == 0 {
			f.Temperature = mockSlowdownC + 3
		}
		st.temp = f.Temperature
	case "thermal":
		st.reasons |= nvml.ClocksThrottleReasonHwThermalSlowdown
	case "power":
		st.reasons |= nvml.ClocksThrottleReasonHwPowerBrakeSlowdown
	case "row-remap-failure":
		st.remapFail = true
	case "lost":
		st.lost = true
	case "clear":
		*st = mockState{temp: 40, dbe: st.dbe}
	default:
		return fmt.Errorf("fault %q: want one of %s", f.Kind, strings.Join(FaultKinds, ", "))
	}
	return nil
}
