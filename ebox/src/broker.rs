//! `ebox broker`: the broker users of a deployment (see `queues::permissions`) and its policies
//! (see `queues::policies`).

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BrokerCommand {
    /// Print the `rabbitmqctl` commands that give each component's broker user
    /// (`<prefix><component>`) only the rights it needs. Create the users first
    /// (`rabbitmqctl add_user`, with their passwords); run these as the broker's administrator.
    Permissions {
        /// The virtual host of the deployment.
        #[arg(long, default_value = "/")]
        vhost: String,
        /// The users' name prefix.
        #[arg(long, default_value = "ebox-")]
        prefix: String,
    },
    /// Print the `rabbitmqctl` commands that set the service's policies (dead-lettering, the
    /// delivery limit, the bounds of the status and dead-letter queues) on a virtual host. Run
    /// them as the broker's administrator, before `ebox registry load` and again after an
    /// upgrade; they take effect on live queues.
    Policies {
        /// The virtual host of the deployment.
        #[arg(long, default_value = "/")]
        vhost: String,
    },
}

/// Offline: needs no settings and connects to nothing.
pub fn run(command: BrokerCommand) {
    match command {
        BrokerCommand::Permissions { vhost, prefix } => {
            println!("# one broker user per component: docs/operations.md, \"Broker users\"");
            for line in queues::permissions::rabbitmqctl_commands(&vhost, &prefix) {
                println!("{line}");
            }
        }
        BrokerCommand::Policies { vhost } => {
            println!("# the broker policies: docs/operations.md, \"Broker topology\"");
            for line in queues::policies::rabbitmqctl_commands(&vhost) {
                println!("{line}");
            }
        }
    }
}
