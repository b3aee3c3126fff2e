//! `rampart completions SHELL` and `rampart man --out DIR`: shell completions and man pages
//! generated from the same clap definitions that parse the command line, so they cannot
//! drift from it.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

/// Written through a buffer: clap_complete panics when its writer fails, and a closed pipe
/// (`rampart completions bash | head`) is not an error worth a panic.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut cmd = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "rampart", &mut script);
    match std::io::Write::write_all(&mut std::io::stdout(), &script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing the completion script"),
        _ => Ok(()),
    }
}

/// Writes `rampart.1` and one page per verb and sub-verb (`rampart-user-import.1`); returns
/// how many were written.
pub fn man_pages(out: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut cmd = crate::Cli::command();
    cmd.build();
    write_pages(&cmd, "rampart", out)
}

fn write_pages(cmd: &clap::Command, name: &str, out: &Path) -> anyhow::Result<usize> {
    let mut buffer = Vec::new();
    clap_mangen::Man::new(cmd.clone()).title(name).render(&mut buffer).context("rendering a man page")?;
    let path = out.join(format!("{name}.1"));
    std::fs::write(&path, buffer).with_context(|| format!("writing {}", path.display()))?;
    let mut written = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        written += write_pages(sub, &format!("{name}-{}", sub.get_name()), out)?;
    }
    Ok(written)
}
