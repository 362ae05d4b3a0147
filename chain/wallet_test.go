package chain

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
)

func TestWalletKeystore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keystore")
	if _, err := WalletAddress(dir); err == nil || !strings.Contains(err.Error(), "no wallet") {
		t.Fatalf("empty keystore: %v", err)
	}
	w, err := CreateWallet(dir, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if a, err := WalletAddress(dir); err != nil || a != w.Address() {
		t.Fatalf("address without passphrase: %s %v", a, err)
	}
	if _, err := OpenWallet(dir, "wrong"); err == nil || !strings.Contains(err.Error(), "wrong passphrase") || !strings.Contains(err.Error(), PassphraseEnv) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	w2, err := OpenWallet(dir, "s3cret")
	if err != nil || w2.Address() != w.Address() || crypto.PubkeyToAddress(w2.Key().PublicKey) != w.Address() {
		t.Fatalf("reopen: %v", err)
	}
	if _, err := CreateWallet(dir, ""); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Fatalf("second account: %v", err)
	}
	files, _ := os.ReadDir(dir)
	if len(files) != 1 {
		t.Fatalf("%d files in the keystore", len(files))
	}
	if fi, _ := files[0].Info(); fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("key file mode %v", fi.Mode())
	}
}

func TestReadPassphrase(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(f, []byte("from-file\n"), 0o600)
	t.Setenv(PassphraseEnv, "from-env")
	t.Setenv(PassphraseFileEnv, "")
	if p, _ := ReadPassphrase(""); p != "from-env" {
		t.Fatalf("env: %q", p)
	}
	if p, _ := ReadPassphrase(f); p != "from-file" {
		t.Fatalf("file: %q", p)
	}
	t.Setenv(PassphraseFileEnv, f)
	if p, _ := ReadPassphrase(""); p != "from-file" {
		t.Fatalf("file env: %q", p)
	}
	if _, err := ReadPassphrase(f + ".missing"); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestUnits(t *testing.T) {
	for _, tc := range []struct {
		in   string
		dec  uint8
		want string
		err  bool
	}{
		{"1.5", 6, "1500000", false}, {"2", 6, "2000000", false}, {"0.000001", 6, "1", false},
		{".5", 6, "500000", false}, {"1.0000001", 6, "", true}, {"-1", 6, "", true}, {"abc", 6, "", true}, {"", 6, "", true},
		{"1", 18, "1000000000000000000", false},
	} {
		got, err := ParseUnits(tc.in, tc.dec)
		if (err != nil) != tc.err || (err == nil && got.String() != tc.want) {
			t.Errorf("ParseUnits(%q, %d) = %v, %v", tc.in, tc.dec, got, err)
		}
		if err == nil {
			if back, _ := ParseUnits(FormatUnits(got, tc.dec), tc.dec); back.Cmp(got) != 0 {
				t.Errorf("FormatUnits round trip of %s: %s", got, FormatUnits(got, tc.dec))
			}
		}
	}
}
