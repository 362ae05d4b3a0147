package gpu

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

var quietLog = slog.New(slog.DiscardHandler)

// BenchmarkInventoryAndPoll is one full inventory plus one health poll over
// the eight GPUs of dgxh100. Its baseline is the least any inventory costs:
// one NVML call per GPU on the same mock.
func BenchmarkInventoryAndPoll(b *testing.B) {
	m, err := New(Config{Mock: "dgxh100", Logger: quietLog})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("baseline-one-call-per-gpu", func(b *testing.B) {
		for range b.N {
			for _, t := range m.gpus {
				t.dev.GetUUID()
			}
		}
	})
	b.Run("inventory+poll", func(b *testing.B) {
		for range b.N {
			m.PollOnce()
			if inv := m.Inventory(); len(inv.GPUs) != 8 {
				b.Fatal("lost GPUs")
			}
		}
	})
	b.Run("inventory", func(b *testing.B) {
		for range b.N {
			m.Inventory()
		}
	})
	b.Run("poll", func(b *testing.B) {
		for range b.N {
			m.PollOnce()
		}
	})
}

// BenchmarkEventToStateChange is the time from an injected XID to the
// change reaching a subscriber (NVML event path), and from a throttling
// fault to the change when a poll reads it (poll path: in the daemon add up
// to one poll interval of waiting).
func BenchmarkEventToStateChange(b *testing.B) {
	m, err := New(Config{Mock: "dgxh100", PollInterval: time.Hour, QuietWindow: time.Nanosecond, Logger: quietLog})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)
	ch, unsub := m.Subscribe()
	defer unsub()
	uuid := m.Inventory().GPUs[3].UUID
	b.Run("xid-event", func(b *testing.B) {
		for range b.N {
			m.Inject(3, Fault{Kind: "xid", XID: 79})
			if c := <-ch; c.To != Unhealthy {
				b.Fatalf("change %+v", c)
			}
			b.StopTimer()
			m.ResetHealth(uuid)
			<-ch
			b.StartTimer()
		}
	})
	b.Run("thermal-poll", func(b *testing.B) {
		for range b.N {
			m.Inject(3, Fault{Kind: "thermal"})
			m.PollOnce()
			if c := <-ch; c.To != Degraded {
				b.Fatalf("change %+v", c)
			}
			b.StopTimer()
			m.Inject(3, Fault{Kind: "clear"})
			m.PollOnce() // the nanosecond quiet window lets it recover
			<-ch
			b.StartTimer()
		}
	})
}
