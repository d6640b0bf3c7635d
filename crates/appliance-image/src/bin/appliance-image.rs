//! `appliance-image build|verify|gce|pins`: the image builder's command
//! line (see `appliance_image::cli` for the options and exit statuses).

fn main() -> std::process::ExitCode {
    use appliance_image::cli;
    let defaults = cli::Defaults::built_from();
    let parsed = cli::parse(cli::APPLIANCE_IMAGE, std::env::args_os().skip(1), &defaults);
    std::process::ExitCode::from(cli::main(cli::APPLIANCE_IMAGE, parsed, &defaults))
}
