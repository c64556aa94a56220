package config

// Predict configures failure prediction.
type Predict struct {
	// HistoryDays bounds the per-drive history kept on disk.
	HistoryDays int `conf:"history_days"`
}

func (p *Predict) setDefaults() { p.HistoryDays = 365 }
