package api

import "github.com/aixblock/aixblock/gpu"

// InjectRequest is POST /v1/gpus/inject.
type InjectRequest struct {
	Index int       `json:"index"`
	Fault gpu.Fault `json:"fault"`
}

// ResetHealthRequest is POST /v1/gpus/reset-health.
type ResetHealthRequest struct {
	UUID string `json:"uuid"`
}
