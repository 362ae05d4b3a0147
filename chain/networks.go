package chain

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// Network is one entry of the built-in table of chains a node can pay on
// (`aixblock init --chain NAME`). The RPC URL is never in the table: it
// comes from the user (a hosted provider's URL usually carries a key).
type Network struct {
	// Name is how users name the chain: dev, sepolia, base, ...
	Name string `json:"name"`
	// ChainID is what the chain's RPC must answer to eth_chainId.
	ChainID uint64 `json:"chain_id"`
	// Escrow is where the escrow lives. Zero in the table means the
	// deterministic address for ChallengePeriod (EscrowAddress), the same
	// on every chain: `aixblock chain deploy` puts it there.
	Escrow common.Address `json:"escrow"`
	// ChallengePeriod is the escrow's: how long a closing channel stays
	// redeemable. It is part of the escrow's address.
	ChallengePeriod time.Duration `json:"-"`
	// Token is the stablecoin providers price in and requesters pay with.
	Token       common.Address `json:"token"`
	TokenSymbol string         `json:"token_symbol"`
	// TestToken marks Token as the test token (anyone can mint it), which
	// `chain deploy` puts on the chain with the escrow.
	TestToken bool `json:"test_token,omitempty"`
	// Confirmations a transaction needs before it counts, by default.
	Confirmations uint64 `json:"confirmations"`
	// LogRange is the most blocks one eth_getLogs request should span;
	// zero means no limit. Hosted RPCs cap it; a user's own may differ.
	LogRange uint64 `json:"log_range,omitempty"`
	// Mainnet marks a chain where tokens are money: no test token there.
	Mainnet bool `json:"mainnet,omitempty"`
	// Dev marks a development chain (the embedded one, aixblock devchain,
	// geth --dev): wallets there may have an empty passphrase.
	Dev bool `json:"dev,omitempty"`
}

// ChallengePeriodS is the challenge period in seconds, as the escrow
// takes it.
func (n Network) ChallengePeriodS() uint64 { return uint64(n.ChallengePeriod / time.Second) }

// Challenge periods of the escrows the table points at: short on dev
// chains (tests and demos wait for them), a day on public ones (a provider
// must see a payer's close and redeem before it ends, through its own
// outages).
const (
	DevChallengePeriod    = 10 * time.Minute
	PublicChallengePeriod = 24 * time.Hour
)

// Networks is the built-in table. Stablecoin addresses are Circle's USDC
// (6 decimals); the escrow addresses are the deterministic ones, so an
// escrow that is not there yet is one `aixblock chain deploy` away.
func Networks() []Network {
	public := func(n Network) Network {
		n.ChallengePeriod = PublicChallengePeriod
		n.TokenSymbol = "USDC"
		n.LogRange = 1000
		return n
	}
	nets := []Network{
		{Name: "dev", ChainID: 1337, ChallengePeriod: DevChallengePeriod, Token: TestTokenAddress(), TokenSymbol: "tUSD",
			TestToken: true, Confirmations: 1, Dev: true},
		public(Network{Name: "sepolia", ChainID: 11155111, Token: common.HexToAddress("0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238"), Confirmations: 2}),
		public(Network{Name: "base-sepolia", ChainID: 84532, Token: common.HexToAddress("0x036CbD53842c5426634e7929541eC2318f3dCF7e"), Confirmations: 5}),
		public(Network{Name: "ethereum", ChainID: 1, Token: common.HexToAddress("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"), Confirmations: 3, Mainnet: true}),
		public(Network{Name: "base", ChainID: 8453, Token: common.HexToAddress("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"), Confirmations: 10, Mainnet: true}),
	}
	for i := range nets {
		if nets[i].Escrow == (common.Address{}) {
			nets[i].Escrow = EscrowAddress(nets[i].ChallengePeriod)
		}
	}
	return nets
}

// LookupNetwork finds a network of the table by name (any case).
func LookupNetwork(name string) (Network, error) {
	var names []string
	for _, n := range Networks() {
		if strings.EqualFold(n.Name, name) {
			return n, nil
		}
		names = append(names, n.Name)
	}
	return Network{}, fmt.Errorf("chain %q: not in the built-in table (%s); for another chain give --chain-rpc, --escrow and --token", name, strings.Join(names, ", "))
}

// NetworkByChainID finds the table's network of a chain ID.
func NetworkByChainID(id uint64) (Network, bool) {
	nets := Networks()
	i := slices.IndexFunc(nets, func(n Network) bool { return n.ChainID == id })
	if i < 0 {
		return Network{}, false
	}
	return nets[i], true
}

// chainName is "11155111 (sepolia)", or the bare ID for a chain not in
// the table.
func chainName(id uint64) string {
	if n, ok := NetworkByChainID(id); ok {
		return fmt.Sprintf("%d (%s)", id, n.Name)
	}
	return fmt.Sprint(id)
}
