//! Device drivers, each over its registers described with tock-registers.

pub mod bcm2711_gpio;
pub mod pl011;
