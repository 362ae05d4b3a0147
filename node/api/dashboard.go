package api

import "time"

// DashboardLogin is POST /v1/dashboard/login: a one-time login link.
type DashboardLogin struct {
	URL string `json:"url"`
	// CodeID names the link's code for GET /v1/dashboard/login/{id}
	// without revealing it.
	CodeID    string    `json:"code_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// LoginCodeState is GET /v1/dashboard/login/{id}.
type LoginCodeState struct {
	Used    bool `json:"used"`
	Expired bool `json:"expired"`
}

// LogoutResult is POST /v1/dashboard/logout-all.
type LogoutResult struct {
	SignedOut int `json:"signed_out"`
}
