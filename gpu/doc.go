// Package gpu knows which GPUs a node has and whether each is fit to rent.
//
// It reads the cards through NVML behind go-nvml's nvml.Interface, so that
// go-nvml's own mock servers (dgxa100, dgxh100, dgxh200, dgxb200) stand in
// on machines without GPUs; Mock adds to them the health readings and event
// sets they lack, and fault injection. With neither a real library nor a
// mock, the node is a CPU-only provider and Inventory says why.
//
// Health comes from two sources: an NVML event set that waits for XID
// critical errors and ECC events, and a poll of temperature, clock event
// reasons, ECC counters, page retirement, row remapping and PCIe replays.
// Each GPU is healthy, degraded or unhealthy; every change is logged with
// its reason and sent to subscribers.
//
// It may import go-nvml and nothing of aixblock's.
package gpu
