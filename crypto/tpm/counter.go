package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dcagent/dcagent/crypto/keystore"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Counter is a TPM NV counter (TPM_NT_COUNTER): 64 bits that only go up,
// kept by the TPM across power cycles, reached through the shared
// connection.
//
// A counter's first value is not 0: the TPM starts a new counter at the
// highest value any counter of it ever had, so that deleting and making
// one again cannot roll it back. Counter increments a new counter once
// so that it can be read at once (a counter never incremented answers
// NV_UNINITIALIZED).
type Counter struct {
	t     *TPM
	index tpm2.TPMHandle
}

var _ keystore.Counter = (*Counter)(nil)

// Counter returns the NV counter at index (0x01000000-0x01FFFFFF),
// defining it when the TPM has none there. It needs an owner hierarchy
// without a password; the counter itself has none and is noDA.
func (s *Store) Counter(index uint32) (keystore.Counter, error) {
	return s.t.Counter(context.Background(), index)
}

// Counter is Store.Counter for a TPM connection.
func (t *TPM) Counter(ctx context.Context, index uint32) (*Counter, error) {
	if index < 0x01000000 || index > 0x01FFFFFF {
		return nil, fmt.Errorf("tpm: NV index 0x%08x is not an NV index handle (0x01000000-0x01FFFFFF)", index)
	}
	c := &Counter{t: t, index: tpm2.TPMHandle(index)}
	err := t.do(ctx, func(tp transport.TPM) error {
		pub, _, err := c.readPublic(tp)
		if errors.Is(err, tpm2.TPMRCHandle) {
			def := tpm2.NVDefineSpace{
				AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
				PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
					NVIndex: c.index,
					NameAlg: tpm2.TPMAlgSHA256,
					Attributes: tpm2.TPMANV{
						AuthWrite: true,
						AuthRead:  true,
						OwnerRead: true,
						NT:        tpm2.TPMNTCounter,
						NoDA:      true,
					},
					DataSize: 8,
				}),
			}
			if _, err := def.Execute(tp); err != nil {
				return fmt.Errorf("tpm: define NV counter 0x%08x: %w", index, err)
			}
			pub, _, err = c.readPublic(tp)
		}
		if err != nil {
			return fmt.Errorf("tpm: NV index 0x%08x: %w", index, err)
		}
		if pub.Attributes.NT != tpm2.TPMNTCounter || pub.DataSize != 8 {
			return fmt.Errorf("tpm: NV index 0x%08x exists but is not a counter (type %d, %d bytes): choose another index", index, pub.Attributes.NT, pub.DataSize)
		}
		if !pub.Attributes.AuthWrite || !pub.Attributes.AuthRead {
			return fmt.Errorf("tpm: NV counter 0x%08x was not made by dcagent (it lacks authWrite/authRead)", index)
		}
		if !pub.Attributes.Written {
			_, err := c.incrementLocked(tp)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Counter) readPublic(tp transport.TPM) (*tpm2.TPMSNVPublic, tpm2.TPM2BName, error) {
	rsp, err := (tpm2.NVReadPublic{NVIndex: c.index}).Execute(tp)
	if err != nil {
		return nil, tpm2.TPM2BName{}, err
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return nil, tpm2.TPM2BName{}, err
	}
	return pub, rsp.NVName, nil
}

// Increment adds one and returns the new value. If the connection breaks
// after the TPM counted, the retry counts again: the value still only
// grows, with a gap.
func (c *Counter) Increment() (uint64, error) {
	var v uint64
	err := c.t.do(context.Background(), func(tp transport.TPM) error {
		var err error
		v, err = c.incrementLocked(tp)
		return err
	})
	return v, err
}

func (c *Counter) incrementLocked(tp transport.TPM) (uint64, error) {
	_, name, err := c.readPublic(tp)
	if err != nil {
		return 0, fmt.Errorf("tpm: NV counter 0x%08x: %w", uint32(c.index), err)
	}
	if _, err := (tpm2.NVIncrement{
		AuthHandle: tpm2.AuthHandle{Handle: c.index, Name: name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: c.index, Name: name},
	}).Execute(tp); err != nil {
		return 0, fmt.Errorf("tpm: increment NV counter 0x%08x: %w", uint32(c.index), err)
	}
	return c.readLocked(tp)
}

// Read returns the counter's value.
func (c *Counter) Read() (uint64, error) {
	var v uint64
	err := c.t.do(context.Background(), func(tp transport.TPM) error {
		var err error
		v, err = c.readLocked(tp)
		return err
	})
	return v, err
}

func (c *Counter) readLocked(tp transport.TPM) (uint64, error) {
	_, name, err := c.readPublic(tp)
	if err != nil {
		return 0, fmt.Errorf("tpm: NV counter 0x%08x: %w", uint32(c.index), err)
	}
	rsp, err := (tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: c.index, Name: name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: c.index, Name: name},
		Size:       8,
	}).Execute(tp)
	if err != nil {
		return 0, fmt.Errorf("tpm: read NV counter 0x%08x: %w", uint32(c.index), err)
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, fmt.Errorf("tpm: NV counter 0x%08x gave %d bytes", uint32(c.index), len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), nil
}
