package gateway

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		field string
		cfg   Config
	}{
		{"KeepAliveTimeout", Config{KeepAliveTimeout: -time.Second}},
		{"WriteTimeout", Config{WriteTimeout: -1}},
		{"MaxFrameSize", Config{MaxFrameSize: -1}},
		{"MaxConns", Config{MaxConns: -5}},
		{"RateBurst", Config{RateBurst: -1}},
		{"Rate", Config{Rate: -1}},
		{"Rate", Config{Rate: math.NaN()}},
		{"MaxUnauthenticated", Config{MaxConns: 10, MaxUnauthenticated: 11}},
		{"Auth.ReplayCap", Config{Auth: &AuthConfig{ReplayCap: -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			_, err := NewServer(tt.cfg)
			var ce *ConfigError
			if !errors.Is(err, ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("NewServer(%+v) = %v, want a ConfigError for %s", tt.cfg, err, tt.field)
			}
		})
	}
	if _, err := NewServer(Config{}); err != nil {
		t.Fatalf("the zero Config: %v", err)
	}
}

// TestValidateReportsEveryProblemInFieldOrder: the fields were checked
// from maps, so a config with two problems named either one, at random.
// Every problem is reported now, always in the same order.
func TestValidateReportsEveryProblemInFieldOrder(t *testing.T) {
	cfg := Config{KeepAliveTimeout: -1, MaxConns: -1, MaxPendingBytes: -1, AuthTimeout: -1, Rate: -2, FramePacing: -1}
	want := "gateway: invalid config: KeepAliveTimeout must not be negative, got -1ns\n" +
		"gateway: invalid config: MaxConns must not be negative\n" +
		"gateway: invalid config: MaxPendingBytes must not be negative\n" +
		"gateway: invalid config: AuthTimeout must not be negative, got -1ns\n" +
		"gateway: invalid config: Rate must be a finite number of frames per second, not negative\n" +
		"gateway: invalid config: FramePacing must not be negative, got -1ns"
	for range 50 {
		if err := cfg.Validate(); err == nil || err.Error() != want {
			t.Fatalf("Validate() =\n%v\nwant\n%s", err, want)
		}
	}
	ccfg := ClientConfig{QueueSize: -1, KeepAliveInterval: -1, FramePacing: -1}
	cwant := "gateway: invalid config: KeepAliveInterval must not be negative, got -1ns\n" +
		"gateway: invalid config: QueueSize must not be negative\n" +
		"gateway: invalid config: FramePacing must not be negative, got -1ns"
	for range 50 {
		if err := ccfg.Validate(); err == nil || err.Error() != cwant {
			t.Fatalf("ClientConfig.Validate() =\n%v\nwant\n%s", err, cwant)
		}
	}
}

func TestClientConfigValidate(t *testing.T) {
	tests := []struct {
		field string
		cfg   ClientConfig
	}{
		{"KeepAliveInterval", ClientConfig{KeepAliveInterval: -1}},
		{"QueueSize", ClientConfig{QueueSize: -1}},
		{"BackoffMin", ClientConfig{BackoffMin: time.Second, BackoffMax: time.Millisecond}},
		{"SignKey", ClientConfig{SignKey: make([]byte, 10)}},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			_, err := NewClient(tt.cfg)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				t.Fatalf("NewClient(%+v) = %v, want a ConfigError for %s", tt.cfg, err, tt.field)
			}
		})
	}
	if _, err := NewClient(ClientConfig{}); err != nil {
		t.Fatalf("the zero ClientConfig: %v", err)
	}
}
