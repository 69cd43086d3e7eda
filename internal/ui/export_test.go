package ui

// Exports for the black-box tests in package ui_test.

type (
	Chart       = chart
	ChartSeries = series
	ChartPoint  = chartPoint
)

var LineChart = lineChart
