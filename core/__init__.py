"""Platform-, SQL- and HTTP-free domain core of ticketbot."""
