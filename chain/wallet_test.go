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
