//! Device drivers, each over its registers described with tock-registers.

pub mod bcm2711_gpio;
#[cfg(target_os = "none")]
pub mod gic;
pub mod gic_affinity;
pub mod mailbox;
pub mod pl011;
