//! `hgframe`: the command-line tool of the hgframe protocol. The stable interface is
//! described in `docs/cli.md`; the code of each subcommand lives in `cli/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// Mercurial's unified frame-based wire protocol, finished and made fast.
#[derive(Debug, Parser)]
#[command(name = "hgframe", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Encode, decode, pack and unpack frames.
    #[command(subcommand)]
    Frames(FramesCommand),
    /// Look inside the protocol's machinery.
    #[command(subcommand)]
    Debug(DebugCommand),
    /// Run the server (HTTP; also TCP or stdio byte streams).
    Serve(cli::serve::ServeArgs),
    /// Send one command to a server, or many over one session (--batch).
    Call(cli::call::CallArgs),
    /// Show what the protocol is for, on real files over loopback.
    Demo(cli::demo::DemoArgs),
}

#[derive(Debug, Subcommand)]
enum FramesCommand {
    /// Human-readable lines (arguments or stdin) to binary frames on stdout.
    Encode(cli::frames::EncodeArgs),
    /// Binary frames to human-readable lines (or JSON).
    Decode(cli::frames::DecodeArgs),
    /// Stdin as the bytes-response frames a server would send.
    Pack(cli::pack::PackArgs),
    /// Frames back to the response bytes of each request.
    Unpack(cli::pack::UnpackArgs),
}

#[derive(Debug, Subcommand)]
enum DebugCommand {
    /// Feed frames into a server reactor and print its actions.
    Reactor(cli::debug::ReactorArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Frames(FramesCommand::Encode(a)) => cli::frames::encode(a),
        Command::Frames(FramesCommand::Decode(a)) => cli::frames::decode(a),
        Command::Frames(FramesCommand::Pack(a)) => cli::pack::pack(a),
        Command::Frames(FramesCommand::Unpack(a)) => cli::pack::unpack(a),
        Command::Debug(DebugCommand::Reactor(a)) => cli::debug::reactor(a),
        Command::Serve(a) => cli::serve::run(a),
        Command::Call(a) => cli::call::run(a),
        Command::Demo(a) => cli::demo::run(a),
    };
    cli::finish(result)
}
