package configs

// ScrapeConfig is one Prometheus-style scrape job (the sidecar's input).
type ScrapeConfig struct{}

// validateScrape checks c.ScrapeConfigs; paths start with scrape_configs[i].
func (c *Config) validateScrape() []fieldError { return nil }
