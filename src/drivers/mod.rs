//! Device drivers, each over its registers described with tock-registers.

pub mod bcm2711_gpio;
#[cfg(target_os = "none")]
pub mod gic;
pub mod mailbox;
pub mod gic_affinity;
pub mod pl011;
