package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/node"
	"github.com/aixblock/aixblock/node/api"
	"github.com/spf13/cobra"
)

func newWalletCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "wallet",
		Short: "The node's wallet and its payment channels in the escrow",
		Long: `The node's wallet (an Ethereum keystore in <repo>/keystore) and its payment
channels. A requester deposits into a channel to a provider and signs
cumulative vouchers; the provider redeems them; the requester can close the
channel and, after the challenge period, withdraw what is left.

AMOUNT is in whole units of the token ("1.5"). --token is an ERC-20
address or "native"; the default is the token in the repo's config (tUSD on
a dev chain).`,
	}
	// One --token value shared by the subcommands that pay in a token.
	var token string
	tokenFlag := func(c *cobra.Command) *cobra.Command {
		c.Flags().StringVar(&token, "token", "", `ERC-20 address or "native" (default: the configured token)`)
		return c
	}
	cmd.AddCommand(
		newWalletAddressCmd(g),
		newWalletBalanceCmd(g),
		tokenFlag(newWalletDepositCmd(g, &token)),
		newWalletChannelsCmd(g),
		newVoucherCmd(g, tokenFlag, &token),
		newWalletRedeemCmd(g),
		tokenFlag(channelCmd(g, "close PAYEE", "Start closing the channel to PAYEE (the payee can still redeem during the challenge period)", (*api.Client).CloseChannel, &token)),
		tokenFlag(channelCmd(g, "withdraw PAYEE", "Withdraw what is left in the channel to PAYEE after its challenge period", (*api.Client).Withdraw, &token)),
	)
	return cmd
}

func newWalletAddressCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "address",
		Short: "Print the wallet's address (no daemon needed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := node.WalletAddress(g.repo)
			if err != nil {
				return err
			}
			out := struct {
				Address string `json:"address"`
			}{a}
			return g.print(cmd.OutOrStdout(), out, func(w io.Writer) { fmt.Fprintln(w, a) })
		},
	}
}

func newWalletBalanceCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "balance",
		Short: "Show the wallet's balances, its chain, the escrow and its challenge period",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			info, err := c.Wallet(cmd.Context())
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), info, func(w io.Writer) {
				kv(w, "address", info.Address)
				kv(w, "chain", fmt.Sprintf("%d (%s)", info.ChainID, info.RPC))
				kv(w, "escrow", fmt.Sprintf("%s  (challenge period %s)", info.Escrow, time.Duration(info.ChallengePeriodS)*time.Second))
				kv(w, info.TokenSymbol, info.TokenBalanceUnits+"  ("+info.Token+")")
				kv(w, "ETH", info.NativeBalanceUnits)
			})
		},
	}
}

func newWalletDepositCmd(g *globals, token *string) *cobra.Command {
	return &cobra.Command{
		Use:   "deposit PAYEE AMOUNT",
		Short: "Open or top up the channel to PAYEE with AMOUNT",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			tx, err := c.Deposit(cmd.Context(), api.PaymentRequest{Payee: args[0], Amount: args[1], Token: *token})
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), tx, txHuman(tx))
		},
	}
}

func newWalletChannelsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "channels",
		Short: "List the channels this wallet pays into or is paid from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			info, err := c.Channels(cmd.Context())
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), info, func(w io.Writer) { channelsHuman(w, info) })
		},
	}
}

// channelsHuman is the table of `wallet channels`.
func channelsHuman(w io.Writer, info api.ChannelsInfo) {
	if len(info.Channels) == 0 {
		fmt.Fprintln(w, "no channels")
		return
	}
	fmt.Fprintln(w, "ROLE\tOTHER SIDE\tTOKEN\tDEPOSITED\tREDEEMED\tAVAILABLE\tVOUCHED\tCLOSES")
	for _, ch := range info.Channels {
		other := ch.Payee
		if ch.Role == "payee" {
			other = ch.Payer
		}
		closes := "-"
		if ch.ClosesAt != 0 {
			closes = time.Unix(int64(ch.ClosesAt), 0).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ch.Role, other.Hex(), ch.Symbol,
			chain.FormatUnits(ch.Deposited.Big(), ch.Decimals), chain.FormatUnits(ch.Redeemed.Big(), ch.Decimals),
			chain.FormatUnits(ch.Available.Big(), ch.Decimals), chain.FormatUnits(ch.Vouched.Big(), ch.Decimals), closes)
	}
}

func newWalletRedeemCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "redeem [VOUCHER.json ...]",
		Short: "Redeem vouchers (files, - for stdin) and every kept voucher owed more",
		Long: `Redeem vouchers in one transaction. Vouchers given as files (or - for
stdin) are checked and kept; then every kept voucher that is owed more than
its channel has paid is redeemed, batched into one transaction.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := readVouchers(cmd.InOrStdin(), args)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.Redeem(cmd.Context(), req)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), res, func(w io.Writer) { redeemHuman(w, res) })
		},
	}
}

// readVouchers reads each voucher file named, - for stdin.
func readVouchers(stdin io.Reader, names []string) (api.RedeemRequest, error) {
	var req api.RedeemRequest
	for _, a := range names {
		var b []byte
		var err error
		if a == "-" {
			b, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
		} else {
			b, err = os.ReadFile(a)
		}
		if err != nil {
			return req, fmt.Errorf("voucher %s: %w", a, err)
		}
		req.Vouchers = append(req.Vouchers, json.RawMessage(b))
	}
	return req, nil
}

// redeemHuman is what `wallet redeem` prints without --json.
func redeemHuman(w io.Writer, res api.RedeemResult) {
	if len(res.Redeemed) == 0 {
		fmt.Fprintln(w, "nothing to redeem")
		return
	}
	kv(w, "tx", res.Tx)
	kv(w, "gas_used", res.GasUsed)
	if res.PaidUnits != "" {
		kv(w, "paid", res.PaidUnits+" "+res.Symbol)
	}
	for _, ch := range res.Redeemed {
		kv(w, "from", fmt.Sprintf("%s: %s %s redeemed in all", ch.Payer.Hex(), chain.FormatUnits(ch.Redeemed.Big(), ch.Decimals), ch.Symbol))
	}
}

func newVoucherCmd(g *globals, tokenFlag func(*cobra.Command) *cobra.Command, token *string) *cobra.Command {
	var out string
	c := tokenFlag(&cobra.Command{
		Use:   "voucher PAYEE AMOUNT",
		Short: "Sign a voucher: this wallet owes PAYEE AMOUNT in all (cumulative)",
		Long: `Sign a voucher for the channel to PAYEE saying this wallet owes AMOUNT in
all. Vouchers are cumulative: each new one replaces the last, and the payee
is paid only the difference. It prints the voucher's JSON (or writes it to
-o FILE) for the payee's ` + "`aixblock wallet redeem`" + `.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			v, err := c.Voucher(cmd.Context(), api.PaymentRequest{Payee: args[0], Amount: args[1], Token: *token})
			if err != nil {
				return err
			}
			if out != "" {
				return os.WriteFile(out, append(v, '\n'), 0o600)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), string(v))
			return err
		},
	})
	c.Flags().StringVarP(&out, "output", "o", "", "write the voucher to this file")
	return c
}

func channelCmd(g *globals, use, short string, do func(*api.Client, context.Context, api.ChannelRequest) (api.TxInfo, error), token *string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			tx, err := do(c, cmd.Context(), api.ChannelRequest{Payee: args[0], Token: *token})
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), tx, txHuman(tx))
		},
	}
}

func txHuman(tx api.TxInfo) func(io.Writer) {
	return func(w io.Writer) {
		kv(w, "tx", tx.Tx)
		kv(w, "block", tx.Block)
		kv(w, "gas_used", tx.GasUsed)
		kv(w, "channel", tx.Channel)
	}
}
