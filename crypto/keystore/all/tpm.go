//go:build !dcagent_notpm

package all

import _ "github.com/dcagent/dcagent/crypto/tpm"
