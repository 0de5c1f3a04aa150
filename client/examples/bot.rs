//! A bot in a few lines: sign a transaction with `solana-keypair`, submit it to the data plane's
//! lanes by name, and print what each lane did.
//!
//! ```text
//! cargo run -p swqos-client --features solana --example bot -- \
//!     /dev/shm/swqos/segment jito,helius [BLOCKHASH]
//! ```
//!
//! The transaction is a 1-lamport transfer from a fresh keypair to itself over `BLOCKHASH`
//! (base58; all zeros when absent): a real signed transaction that a cluster would refuse
//! (no funds, likely a stale blockhash). A bot signs its own over a recent blockhash.

use std::process::ExitCode;

use solana_hash::Hash;
use solana_keypair::Keypair;
use solana_message::{Message, VersionedMessage};
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;
use swqos_client::{Client, LaneSet};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(shm), Some(lanes)) = (args.first(), args.get(1)) else {
        eprintln!("usage: bot SEGMENT_PATH LANE[,LANE...] [BLOCKHASH]");
        return ExitCode::from(2);
    };
    let blockhash = match args.get(2) {
        Some(b) => match b.parse::<Hash>() {
            Ok(h) => h,
            Err(e) => {
                eprintln!("error: blockhash {b:?}: {e}");
                return ExitCode::from(2);
            }
        },
        None => Hash::default(),
    };
    match run(shm, lanes, blockhash) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(shm: &str, lanes: &str, blockhash: Hash) -> Result<bool, Box<dyn std::error::Error>> {
    let mut client = Client::attach(shm)?;
    let lanes = LaneSet::from_names(&client, lanes.split(','))?;

    let payer = Keypair::new();
    let transfer =
        solana_system_interface::instruction::transfer(&payer.pubkey(), &payer.pubkey(), 1);
    let message = Message::new_with_blockhash(&[transfer], Some(&payer.pubkey()), &blockhash);
    let tx = VersionedTransaction::try_new(VersionedMessage::Legacy(message), &[&payer])?;
    println!("signature {}", tx.signatures[0]);

    let submission = client.submit_transaction(&tx, &lanes)?;
    let mut sent = false;
    for outcome in client.completions(&submission) {
        println!("{outcome} after {:?}", outcome.elapsed);
        sent |= outcome.is_sent();
    }
    Ok(sent)
}
